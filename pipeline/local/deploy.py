"""Deploy infra/template.yaml to moto's CloudFormation, then bootstrap what moto skips.

moto 5.2.5 reaches CREATE_COMPLETE for every resource of the template, but it does not
apply the bucket's NotificationConfiguration; the bootstrap reads that block from the same
template and applies it through the S3 API. Event source mappings are not created locally
(CreateEventSourceMappings=false): the event pump plays that part. A stack kept from an older
template (the local state survives `imgsim down`/`up`) is not updated: the bootstrap adds the
table indexes declared since, and gives the pending images written before Pending_GSI its key.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline import aws
from pipeline.aws_build.cfn_template import TEMPLATE_PATH, load_template, template_body
from pipeline.aws_build.lambda_package import lambda_package
from pipeline.settings import Settings
from pipeline.storage.images_table import ImageStore

BUCKET_RESOURCE = "ImagesBucket"
CODE_KEY = "lambda/imgsim.zip"


@dataclass(frozen=True)
class StackSpec:
    name: str
    code_bucket: str
    ingest_visibility_timeout: int = 30


def parameters(settings: Settings, spec: StackSpec) -> list[dict[str, str]]:
    values = {
        "BucketName": settings.bucket,
        "ImagesTableName": settings.images_table,
        "EmbeddingsTableName": settings.embeddings_table,
        "ShardManifestsTableName": settings.shard_manifests_table,
        "IdempotencyTableName": settings.idempotency_table,
        "IngestQueueName": settings.ingest_queue,
        "EmbedQueueName": settings.embed_queue,
        "IngestVisibilityTimeout": str(spec.ingest_visibility_timeout),
        "CodeBucket": spec.code_bucket,
        "CodeKey": CODE_KEY,
        "PresignExpirySeconds": str(settings.presign_expiry_seconds),
        "CreateEventSourceMappings": "false",
    }
    return [{"ParameterKey": k, "ParameterValue": v} for k, v in values.items()]


def deploy(settings: Settings, spec: StackSpec, template: Path = TEMPLATE_PATH) -> dict[str, str]:
    """Create the stack unless it exists, wait for it, bootstrap; return its resources."""
    cfn = aws.client(settings, "cloudformation")
    if not _stack_exists(cfn, spec.name):
        s3 = aws.client(settings, "s3")
        _ensure_bucket(s3, spec.code_bucket, settings.region)
        s3.put_object(Bucket=spec.code_bucket, Key=CODE_KEY, Body=lambda_package())
        cfn.create_stack(
            StackName=spec.name,
            TemplateBody=template_body(template),
            Parameters=parameters(settings, spec),
            Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"],
        )
    status = _wait_for_stack(cfn, spec.name)
    if status != "CREATE_COMPLETE" and status != "UPDATE_COMPLETE":
        raise RuntimeError(f"stack {spec.name} ended in {status}")
    pages = cfn.get_paginator("list_stack_resources").paginate(StackName=spec.name)
    resources = {
        r["LogicalResourceId"]: r["PhysicalResourceId"]
        for page in pages
        for r in page["StackResourceSummaries"]
    }
    declared = load_template(template)
    apply_bucket_notifications(settings, declared, resources)
    add_missing_indexes(settings, declared, resources)
    # idempotent, and cheap on a local table: run every time, so a bootstrap interrupted
    # between adding the index and filling it is finished by the next one
    ImageStore(settings).backfill_pending_keys()
    return resources


def add_missing_indexes(
    settings: Settings, template: dict[str, Any], resources: dict[str, str]
) -> dict[str, list[str]]:
    """Create the global secondary indexes the template declares and a kept table lacks, one
    UpdateTable each (as DynamoDB requires); the names added, by the table's logical id."""
    dynamodb = aws.client(settings, "dynamodb")
    added: dict[str, list[str]] = {}
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] != "AWS::DynamoDB::Table" or logical_id not in resources:
            continue
        properties = resource["Properties"]
        table = dynamodb.describe_table(TableName=resources[logical_id])["Table"]
        present = {g["IndexName"] for g in table.get("GlobalSecondaryIndexes", [])}
        for index in properties.get("GlobalSecondaryIndexes", []):
            if index["IndexName"] in present:
                continue
            keys = {k["AttributeName"] for k in index["KeySchema"]}
            dynamodb.update_table(
                TableName=resources[logical_id],
                AttributeDefinitions=[
                    d for d in properties["AttributeDefinitions"] if d["AttributeName"] in keys
                ],
                GlobalSecondaryIndexUpdates=[{"Create": index}],
            )
            added.setdefault(logical_id, []).append(index["IndexName"])
    return added


def _stack_exists(cfn: Any, name: str) -> bool:
    try:
        stacks = cfn.describe_stacks(StackName=name)["Stacks"]
    except cfn.exceptions.ClientError:
        return False
    return any(s["StackStatus"] != "DELETE_COMPLETE" for s in stacks)


def _ensure_bucket(s3: Any, bucket: str, region: str) -> None:
    try:
        s3.head_bucket(Bucket=bucket)
    except s3.exceptions.ClientError:
        extra = (
            {}
            if region == "us-east-1"
            else {"CreateBucketConfiguration": {"LocationConstraint": region}}
        )
        s3.create_bucket(Bucket=bucket, **extra)


def _wait_for_stack(cfn: Any, name: str, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while True:
        status = cfn.describe_stacks(StackName=name)["Stacks"][0]["StackStatus"]
        if not status.endswith("_IN_PROGRESS") or time.monotonic() > deadline:
            return status
        time.sleep(0.2)


def apply_bucket_notifications(
    settings: Settings, template: dict[str, Any], resources: dict[str, str]
) -> None:
    """Apply the template's bucket NotificationConfiguration if the stack did not."""
    s3 = aws.client(settings, "s3")
    current = s3.get_bucket_notification_configuration(Bucket=settings.bucket)
    declared = template["Resources"][BUCKET_RESOURCE]["Properties"]["NotificationConfiguration"]
    events = {e for c in current.get("QueueConfigurations", []) for e in c["Events"]}
    if {entry["Event"] for entry in declared.get("QueueConfigurations", [])} <= events:
        return  # applied already (a stack kept from before gets the events added since)
    sqs = aws.client(settings, "sqs")
    configs = []
    for entry in declared.get("QueueConfigurations", []):
        logical_id = entry["Queue"]["Fn::GetAtt"][0]
        queue_name = resources[logical_id].rstrip("/").rsplit("/", 1)[-1]
        url = sqs.get_queue_url(QueueName=queue_name)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        rules = entry.get("Filter", {}).get("S3Key", {}).get("Rules", [])
        configs.append(
            {
                "QueueArn": arn["Attributes"]["QueueArn"],
                "Events": [entry["Event"]],
                "Filter": {
                    "Key": {
                        "FilterRules": [{"Name": r["Name"], "Value": r["Value"]} for r in rules]
                    }
                },
            }
        )
    s3.put_bucket_notification_configuration(
        Bucket=settings.bucket, NotificationConfiguration={"QueueConfigurations": configs}
    )
