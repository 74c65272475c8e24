"""The Lambda events of this folder, pointed at objects a test stored: the handler gets the
exact shape AWS (or moto) delivers, with only bucket, key, ETag and size replaced."""

from __future__ import annotations

import copy
import json
import uuid
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

EVENTS = Path(__file__).parent
AWS_PUT, MOTO_PUT, TEST_EVENT = (
    "sqs_s3_put_aws.json",
    "sqs_s3_put_moto.json",
    "sqs_s3_test_event.json",
)


@cache
def _load(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text())


def template_record(name: str) -> dict[str, Any]:
    """The first SQS record of an event file, with a fresh message id (a batch's ids differ)."""
    record = copy.deepcopy(_load(name)["Records"][0])
    record["messageId"] = str(uuid.uuid4())
    return record


def s3_put_record(
    bucket: str, key: str, etag: str, size: int, template: str = AWS_PUT
) -> dict[str, Any]:
    """An SQS record whose S3 notification announces this object version. The key is encoded
    the way the template's sender encodes it: AWS keeps `/`, moto encodes it as `%2F`."""
    record = template_record(template)
    body = json.loads(record["body"])
    s3 = body["Records"][0]["s3"]
    safe = "" if "%2F" in s3["object"]["key"] else "/"
    s3["bucket"].update(name=bucket, arn=f"arn:aws:s3:::{bucket}")
    s3["object"].update(key=quote_plus(key, safe=safe), eTag=etag.strip('"'), size=size)
    record["body"] = json.dumps(body)
    return record


def with_body(body: str, template: str = AWS_PUT) -> dict[str, Any]:
    """An SQS record carrying any body (a message that is not an S3 notification)."""
    return {**template_record(template), "body": body}


def batch(*records: dict[str, Any]) -> dict[str, Any]:
    """The SQS event of a batch of records, as the event source mapping hands it over."""
    return {"Records": list(records)}


def api_gateway_get_image(image_id: str) -> dict[str, Any]:
    """The API Gateway REST proxy event of `GET /images/<image_id>` on stage v1."""
    text = (EVENTS / "apigw_rest_proxy_get_image.json").read_text()
    return json.loads(text.replace("IMAGE_ID", image_id))
