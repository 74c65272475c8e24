"""Pruning the API function's old versions on moto's Lambda (versions, aliases, deletes by
qualifier): the newest KEEP and every version an alias names stay."""

from __future__ import annotations

import io
import json
import uuid
import zipfile

import boto3

from pipeline.aws_build.api_versions import KEEP, prune
from pipeline.local.moto_server import MotoServer


def _code(n: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("handler.py", f"def handler(event, context):\n    return {n}\n")
    return buffer.getvalue()


def test_prune_keeps_the_newest_versions_and_the_aliased_one(moto_server: MotoServer) -> None:
    region = "us-east-1"
    iam = boto3.client("iam", endpoint_url=moto_server.url, region_name=region)
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "lambda.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    name = f"prune-{uuid.uuid4().hex[:8]}"
    role = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]
    lam = boto3.client("lambda", endpoint_url=moto_server.url, region_name=region)
    lam.create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=role["Arn"],
        Handler="handler.handler",
        Code={"ZipFile": _code(0)},
    )
    published = []
    for n in range(1, 7):
        lam.update_function_code(FunctionName=name, ZipFile=_code(n))
        published.append(lam.publish_version(FunctionName=name)["Version"])
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion=published[1])  # rolled back

    deleted = prune(lam, name)

    remaining = {
        v["Version"] for v in lam.list_versions_by_function(FunctionName=name)["Versions"]
    } - {"$LATEST"}
    assert remaining == {*published[-KEEP:], published[1]}
    assert deleted == [v for v in published if v not in remaining]
    assert prune(lam, name) == []  # nothing more to do
