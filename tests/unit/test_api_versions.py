"""Every change of the API function's code or configuration reaches the alias API Gateway
invokes: the template keys the published version on a digest of both (aws_build.api_versions).
moto deploys no versions or aliases, so this is checked on the template and the digest."""

from __future__ import annotations

import copy

from typer.testing import CliRunner

from pipeline.aws_build.api_versions import version_digest
from pipeline.aws_build.cfn_template import load_template, resolve
from pipeline.cli.app import app
from pipeline.cli.errors import USAGE

TEMPLATE = load_template()
CODE = b"PK\x03\x04 the code package"
DEPLOY = {
    "BucketName": "my-imgsim-bucket",
    "CodeBucket": "my-artifacts",
    "CodeKey": "imgsim/imgsim-0123456789abcdef.zip",
    "DependenciesLayerArn": "arn:aws:lambda:us-west-2:1:layer:imgsim-deps:1",
}


def _description(**parameters: str) -> str:
    version = TEMPLATE["Resources"]["ApiFunctionVersion"]["Properties"]
    return resolve(version["Description"], parameters, {})


def test_a_new_digest_replaces_the_version_the_alias_names() -> None:
    """CloudFormation replaces an AWS::Lambda::Version whose properties change: a new digest
    with the same CodeKey is a new version, and the alias follows it."""
    resources = TEMPLATE["Resources"]
    assert "ApiVersionDigest" in TEMPLATE["Parameters"]
    code_key = DEPLOY["CodeKey"]
    assert _description(CodeKey=code_key, ApiVersionDigest="aaaa") != _description(
        CodeKey=code_key, ApiVersionDigest="bbbb"
    )
    # the digest is in the function's configuration too: PublishVersion of an unchanged
    # function fails, and a digest may change through a parameter the function does not read
    env = resources["ApiFunction"]["Properties"]["Environment"]["Variables"]
    assert env["IMGSIM_API_VERSION_DIGEST"] == {"Ref": "ApiVersionDigest"}
    alias = resources["ApiFunctionAlias"]["Properties"]
    assert alias["FunctionVersion"] == {"Fn::GetAtt": ["ApiFunctionVersion", "Version"]}
    assert resources["ApiFunctionVersion"]["UpdateReplacePolicy"] == "Retain"  # pruned by us


def test_the_digest_changes_with_the_code_and_with_each_configuration_change() -> None:
    base = version_digest(CODE, DEPLOY, TEMPLATE)
    assert base == version_digest(CODE, dict(reversed(DEPLOY.items())), TEMPLATE)
    changed = {
        "code": version_digest(CODE + b"!", DEPLOY, TEMPLATE),
        "model": version_digest(
            CODE, {**DEPLOY, "ImageModelId": "amazon.nova-canvas-v1:0"}, TEMPLATE
        ),
        "layer": version_digest(CODE, {**DEPLOY, "DependenciesLayerArn": "arn:...:2"}, TEMPLATE),
        "endpoint": version_digest(CODE, {**DEPLOY, "EmbedEndpointName": "other"}, TEMPLATE),
    }
    edited = copy.deepcopy(TEMPLATE)
    edited["Resources"]["ApiFunction"]["Properties"]["MemorySize"] = 2048  # a template edit
    changed["template"] = version_digest(CODE, DEPLOY, edited)
    assert base not in changed.values()
    assert len(set(changed.values())) == len(changed)
    assert all(len(d) == 16 and int(d, 16) >= 0 for d in changed.values())


def test_the_command_prints_the_digest_of_a_deploy(tmp_path) -> None:
    package = tmp_path / "imgsim.zip"
    package.write_bytes(CODE)
    pairs = [f"{k}={v}" for k, v in DEPLOY.items()]
    result = CliRunner().invoke(app, ["api-versions", "digest", str(package), *pairs])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == version_digest(CODE, DEPLOY, TEMPLATE)


def test_a_parameter_without_a_value_or_no_package_is_a_usage_error(tmp_path) -> None:
    package = tmp_path / "imgsim.zip"
    package.write_bytes(CODE)
    bad_pair = CliRunner().invoke(app, ["api-versions", "digest", str(package), "ModelId"])
    assert bad_pair.exit_code == USAGE and "expected Name=Value" in bad_pair.stderr
    missing = CliRunner().invoke(app, ["api-versions", "digest", str(tmp_path / "none.zip")])
    assert missing.exit_code == USAGE and "imgsim build lambda" in missing.stderr
