"""Where moto's IAM enforcement differs from AWS's, made to answer like AWS.

moto server enforces IAM on signed requests once `/moto-api/reset-auth` (or
`INITIAL_NO_AUTH_ACTION_COUNT`) says so, which is how the template's policies are tested on the
local stack (`tests/iam_identities.py`). As shipped it would let policy faults through,
or refuse correct policies:

- DynamoDB requests are authorized against resource "*", so a statement scoped to a table ARN
  never matches: here each table (and index) a request names is authorized by its ARN, as AWS
  does (BatchGetItem and TransactWriteItems name several).
- SQS GetQueueUrl is authorized against "*" (moto reads no queue from it): here against the
  named queue's ARN, so `sqs:GetQueueUrl` on the queue is what grants it. The message move
  tasks (a DLQ's redrive; moto then answers that it lacks them) likewise: against the source
  queue's ARN, as AWS authorizes them.
- S3 GET/HEAD of a missing key answers 404 to anyone allowed s3:GetObject; AWS answers 404
  only to callers also allowed s3:ListBucket on the bucket, and 403 to the others.
- S3 HeadBucket is authorized as "s3:HeadBucket", which is no IAM action: AWS authorizes it as
  s3:ListBucket (the amazon provider's operators call it to check that a bucket exists).

moto still treats every Condition block as met (it evaluates StringEquals only, and has request
values for sts:ExternalId alone), ignores bucket policies, and authorizes nothing on services it
does not run here (SageMaker, Bedrock: the emulators).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from moto.dynamodb.responses import DynamoHandler
from moto.s3.exceptions import MissingKey
from moto.s3.responses import ACTION_MAP, S3Response
from moto.sqs.exceptions import QueueDoesNotExist
from moto.sqs.responses import SQSResponse
from moto.utilities.utils import get_partition


def dynamodb_resources(body: dict[str, Any], prefix: str) -> list[str]:
    """The ARNs of the tables and indexes a DynamoDB request names (`prefix` is
    arn:<partition>:dynamodb:<region>:<account>:table/)."""
    tables = [body["TableName"]] if body.get("TableName") else []
    tables += list(body.get("RequestItems") or {})
    for item in body.get("TransactItems") or []:
        tables += [op["TableName"] for op in item.values() if "TableName" in op]
    arns = [f"{prefix}{table}" for table in dict.fromkeys(tables)]
    if body.get("IndexName") and arns:
        arns = [f"{arns[0]}/index/{body['IndexName']}"]
    return arns or ["*"]


def _patch(cls: type, name: str, make: Callable[[Any], Any]) -> None:
    original = getattr(cls, name)
    if getattr(original, "imgsim_patched", False):
        return
    replacement = make(original)
    replacement.imgsim_patched = True
    setattr(cls, name, replacement)


def _dynamodb(original: Any) -> Any:
    def authorize(self: DynamoHandler, resource: str = "*") -> None:
        prefix = f"arn:{get_partition(self.region)}:dynamodb:{self.region}:"
        prefix += f"{self.current_account}:table/"
        for arn in dynamodb_resources(self.body if isinstance(self.body, dict) else {}, prefix):
            original(self, arn)

    return authorize


_MOVE_TASKS = ("StartMessageMoveTask", "ListMessageMoveTasks")  # both name the source queue


def _sqs(original: Any) -> Any:
    def determine(self: SQSResponse) -> str:
        if self._get_action() in _MOVE_TASKS:
            return str(self._get_param("SourceArn") or "*")
        name = self._get_param("QueueName") if self._get_action() == "GetQueueUrl" else None
        if not name:
            return str(original(self))
        try:
            return str(self.sqs_backend.get_queue(name).queue_arn)
        except QueueDoesNotExist:
            return "*"

    return determine


def _may_list(self: S3Response, bucket_name: str) -> None:
    """Raise AccessDenied unless the caller may list the bucket (AWS's rule for missing keys)."""
    self.data["Action"] = "ListBucket"
    self._authenticate_and_authorize_s3_action(bucket_name=bucket_name)


def _s3_get(original: Any) -> Any:
    def get_object(self: S3Response) -> Any:
        try:
            return original(self)
        except MissingKey:
            _may_list(self, self.bucket_name)
            raise

    return get_object


def _s3_head(original: Any) -> Any:
    def head_object(self: S3Response, bucket_name: str, *args: Any, **kwargs: Any) -> Any:
        response = original(self, bucket_name, *args, **kwargs)
        if response[0] == 404:
            _may_list(self, bucket_name)
        return response

    return head_object


def authorize_like_aws() -> None:
    """Apply the fixes of the module docstring (idempotent)."""
    ACTION_MAP["BUCKET"]["HEAD"]["DEFAULT"] = "ListBucket"
    _patch(DynamoHandler, "_authenticate_and_authorize_normal_action", _dynamodb)
    _patch(SQSResponse, "_determine_resource", _sqs)
    _patch(S3Response, "get_object", _s3_get)
    _patch(S3Response, "head_object", _s3_head)
