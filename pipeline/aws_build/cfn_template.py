"""Read infra/template.yaml (CloudFormation short-form tags included), for a deploy (the local
stack's, the API version digest), and resolve its intrinsic functions where values are needed
(the IAM identities the tests enforce)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from pipeline.aws_build import REPO_ROOT

TEMPLATE_PATH = REPO_ROOT / "infra" / "template.yaml"


class _CfnLoader(yaml.SafeLoader):
    """SafeLoader that turns `!Ref X` into {"Ref": X}, `!Condition X` into {"Condition": X} and
    `!GetAtt A.B` into {"Fn::GetAtt": [A, B]}, like CloudFormation's own long form."""


def _construct_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    elif isinstance(node, yaml.MappingNode):
        value = loader.construct_mapping(node, deep=True)
    else:
        raise yaml.constructor.ConstructorError(None, None, f"unexpected node {node!r}")
    if suffix in ("Ref", "Condition"):  # a condition named inside another: {"Condition": X}
        return {suffix: value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_CfnLoader.add_multi_constructor("!", _construct_tag)


def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    return yaml.load(path.read_text(), Loader=_CfnLoader)


def template_body(path: Path = TEMPLATE_PATH) -> str:
    """The template as moto's CloudFormation can create it (JSON, long-form intrinsics)."""
    return json.dumps(without_lambda_versions(load_template(path)))


LAMBDA_QUALIFIERS = ("AWS::Lambda::Version", "AWS::Lambda::Alias")


def without_lambda_versions(template: dict[str, Any]) -> dict[str, Any]:
    """moto 5.2.5 creates an AWS::Lambda::Version but cannot reference it (its Ref is not a
    string) and has no AWS::Lambda::Alias, so locally each version and alias is dropped and
    what referenced it names the function's ARN instead. Nothing local invokes through API
    Gateway (the local API serves the handler), so the stack behaves the same. Pure."""
    resources = template["Resources"]
    versions = {
        name: resource["Properties"]["FunctionName"]["Ref"]
        for name, resource in resources.items()
        if resource["Type"] in LAMBDA_QUALIFIERS
    }

    def rewrite(node: Any) -> Any:
        if isinstance(node, list):
            return [rewrite(item) for item in node]
        if isinstance(node, str):
            for version, function in versions.items():
                node = node.replace("${" + version + "}", "${" + function + ".Arn}")
            return node
        if not isinstance(node, dict):
            return node
        if set(node) == {"Ref"} and node["Ref"] in versions:
            return {"Fn::GetAtt": [versions[node["Ref"]], "Arn"]}
        return {key: rewrite(value) for key, value in node.items()}

    kept = {name: r for name, r in resources.items() if name not in versions}
    return rewrite({**template, "Resources": kept})


def resolve(node: Any, refs: Mapping[str, str], attributes: Mapping[str, str]) -> Any:
    """`node` with Ref, Fn::Sub and Fn::GetAtt replaced by values, as CloudFormation would:
    `refs` maps parameter, pseudo-parameter and logical ids to their Ref value, `attributes`
    maps "LogicalId.Attribute" to its value. Anything else unresolvable raises KeyError."""
    if isinstance(node, list):
        return [resolve(item, refs, attributes) for item in node]
    if not isinstance(node, dict):
        return node
    if set(node) == {"Ref"}:
        return refs[node["Ref"]]
    if set(node) == {"Fn::GetAtt"}:
        return attributes[".".join(node["Fn::GetAtt"])]
    if set(node) == {"Fn::Sub"}:
        text, local = (node["Fn::Sub"], {}) if isinstance(node["Fn::Sub"], str) else node["Fn::Sub"]
        local = {k: resolve(v, refs, attributes) for k, v in local.items()}
        text = _SUB_VARIABLE.sub(lambda m: _sub_value(m.group(1), local, refs, attributes), text)
        return text.replace("${!", "${")  # ${!Literal} is Sub's escape for a literal ${Literal}
    return {key: resolve(value, refs, attributes) for key, value in node.items()}


_SUB_VARIABLE = re.compile(r"\$\{([^}!]+)\}")


def _sub_value(
    name: str, local: Mapping[str, str], refs: Mapping[str, str], attributes: Mapping[str, str]
) -> str:
    if name in local:
        return str(local[name])
    return str(attributes[name] if "." in name and name not in refs else refs[name])
