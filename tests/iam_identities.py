"""The template's IAM policies as identities on the local stack, with IAM enforced.

Each role or managed policy of infra/template.yaml becomes an IAM user on moto server whose
inline policies are exactly that resource's policy documents, with the template's Ref, Sub and
GetAtt resolved to the deployed stack's names. Once `enforce_iam` has switched moto's
enforcement on, code run under a user's keys can do what the role could do on AWS and nothing
else, so a permission the code needs and the template lacks fails a test (moto's gaps:
`pipeline.local.moto_iam`). Managed AWS policies a role attaches (AWSLambdaBasicExecutionRole:
CloudWatch Logs) are not reproduced: the local stack has no CloudWatch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import boto3
import requests

from pipeline.aws_build.cfn_template import resolve

PSEUDO_PARTITION = "aws"
URL_SUFFIX = "amazonaws.com"


@dataclass(frozen=True)
class StackValues:
    """What Ref and GetAtt give on one deployed stack."""

    refs: dict[str, str]
    attributes: dict[str, str]


@dataclass(frozen=True)
class Identity:
    name: str
    access_key_id: str
    secret_access_key: str

    def session(self, region: str) -> boto3.Session:
        return boto3.Session(
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            region_name=region,
        )


def stack_values(
    template: dict[str, Any],
    parameters: Mapping[str, str],
    resources: Mapping[str, str],
    region: str,
    account: str,
    stack_name: str,
) -> StackValues:
    """Ref and GetAtt values of the template's tables, queues and roles on a deployed stack
    (`resources`: logical id -> physical id, as ListStackResources gives them)."""
    refs = {
        name: str(spec["Default"])
        for name, spec in template["Parameters"].items()
        if "Default" in spec
    }
    refs.update(parameters)
    refs.update(
        {
            "AWS::Partition": PSEUDO_PARTITION,
            "AWS::Region": region,
            "AWS::AccountId": account,
            "AWS::StackName": stack_name,
            "AWS::URLSuffix": URL_SUFFIX,
        }
    )
    refs.update({k: v for k, v in resources.items() if k})
    arn = f"arn:{PSEUDO_PARTITION}"
    attributes: dict[str, str] = {}
    for logical_id, physical_id in resources.items():
        kind = template["Resources"].get(logical_id, {}).get("Type")
        if kind == "AWS::DynamoDB::Table":
            attributes[f"{logical_id}.Arn"] = (
                f"{arn}:dynamodb:{region}:{account}:table/{physical_id}"
            )
        elif kind == "AWS::SQS::Queue":
            name = physical_id.rstrip("/").rsplit("/", 1)[-1]
            attributes[f"{logical_id}.Arn"] = f"{arn}:sqs:{region}:{account}:{name}"
            attributes[f"{logical_id}.QueueName"] = name
        elif kind == "AWS::IAM::Role":
            attributes[f"{logical_id}.Arn"] = f"{arn}:iam::{account}:role/{physical_id}"
    return StackValues(refs, attributes)


def policy_documents(
    template: dict[str, Any], logical_id: str, values: StackValues
) -> list[dict[str, Any]]:
    """The resolved inline policy documents of a role, or the document of a managed policy."""
    properties = template["Resources"][logical_id]["Properties"]
    documents = (
        [properties["PolicyDocument"]]
        if "PolicyDocument" in properties
        else [p["PolicyDocument"] for p in properties.get("Policies", [])]
    )
    return [resolve(d, values.refs, values.attributes) for d in documents]


def create_identity(iam: Any, name: str, documents: list[dict[str, Any]]) -> Identity:
    """An IAM user whose only permissions are `documents`; call before `enforce_iam`."""
    iam.create_user(UserName=name)
    for index, document in enumerate(documents):
        iam.put_user_policy(
            UserName=name, PolicyName=f"{name}-{index}", PolicyDocument=json.dumps(document)
        )
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return Identity(name, key["AccessKeyId"], key["SecretAccessKey"])


def without_actions(documents: list[dict[str, Any]], *actions: str) -> list[dict[str, Any]]:
    """`documents` with `actions` taken out of every statement (to prove a test can fail)."""
    result = []
    for document in documents:
        statements = []
        for statement in document["Statement"]:
            granted = statement["Action"]
            granted = [granted] if isinstance(granted, str) else granted
            kept = [a for a in granted if a not in actions]
            if kept:
                statements.append({**statement, "Action": kept})
        result.append({**document, "Statement": statements})
    return result


def enforce_iam(moto_url: str) -> None:
    """From the next request on, moto authenticates and authorizes every signed request."""
    requests.post(f"{moto_url}/moto-api/reset-auth", data=b"0", timeout=10).raise_for_status()
