"""The API function's published versions on AWS: the digest that makes CloudFormation publish a
new one, and the pruning of old ones (docs/deploy.md runs both).

The template's `ApiFunctionVersion` names `ApiVersionDigest` in its Description; a Version is
replaced whenever a property changes, so a new digest publishes the function's current code and
configuration and moves the alias `live` to it. The digest covers the code package, the template's
ApiFunction resource and every parameter the deploy passes: a new model id, layer or endpoint
name is a new digest, as new code is. The replaced version stays (UpdateReplacePolicy Retain: a
rollback moves the alias back); `prune` deletes all but the newest `KEEP` versions and those an
alias names.

    imgsim api-versions digest build/imgsim.zip Name=Value ...
    imgsim api-versions prune FUNCTION_NAME [--keep N]
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from pipeline.aws_build.cfn_template import TEMPLATE_PATH, load_template

KEEP = (
    3  # published versions kept besides those an alias names: the live one and two to roll back to
)
FUNCTION_RESOURCE = "ApiFunction"


def version_digest(
    code: bytes, parameters: Mapping[str, str], template: Mapping[str, Any] | None = None
) -> str:
    """16 hex digits of SHA-256 over the code package, the template's API function resource and
    the deploy's parameter values (sorted): equal inputs, equal digest."""
    template = template if template is not None else load_template(TEMPLATE_PATH)
    content = {
        "code": hashlib.sha256(code).hexdigest(),
        "function": template["Resources"][FUNCTION_RESOURCE],
        "parameters": dict(sorted(parameters.items())),
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


def prune(lambda_client: Any, function_name: str, keep: int = KEEP) -> list[str]:
    """Delete the function's published versions but the newest `keep` and any an alias names;
    the deleted version numbers, oldest first."""
    if keep < 1:
        raise ValueError("keep at least the newest version")
    pages = lambda_client.get_paginator("list_versions_by_function").paginate(
        FunctionName=function_name
    )
    versions = sorted(
        (
            int(v["Version"])
            for page in pages
            for v in page["Versions"]
            if v["Version"] != "$LATEST"
        ),
    )
    aliases = lambda_client.get_paginator("list_aliases").paginate(FunctionName=function_name)
    named = {a["FunctionVersion"] for page in aliases for a in page["Aliases"]}
    doomed = [str(v) for v in versions[: max(len(versions) - keep, 0)] if str(v) not in named]
    for version in doomed:
        lambda_client.delete_function(FunctionName=function_name, Qualifier=version)
    return doomed
