"""S3 event notifications as they arrive in SQS message bodies."""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import unquote_plus

from aws_lambda_powertools.utilities.data_classes import S3Event


@dataclass(frozen=True)
class ObjectCreated:
    bucket: str
    key: str
    etag: str | None
    size: int | None


class MalformedNotification(ValueError):
    """A message body that is not an S3 notification: retrying cannot help; it ends in the DLQ."""


def object_created_events(body: str) -> list[ObjectCreated]:
    """The ObjectCreated records of one SQS message body (S3's TestEvent has none)."""
    try:
        payload = json.loads(body)
    except json.JSONDecodeError as exc:
        raise MalformedNotification(f"message body is not JSON ({exc})") from None
    if not isinstance(payload, dict):
        raise MalformedNotification("message body is not a JSON object")
    if payload.get("Event") == "s3:TestEvent":
        return []
    if not isinstance(payload.get("Records"), list):
        raise MalformedNotification("message body has no S3 Records")
    events = []
    try:
        for record in S3Event(payload).records:
            if not record.event_name.startswith("ObjectCreated"):
                continue
            obj = record.s3.get_object
            events.append(
                ObjectCreated(
                    bucket=record.s3.bucket.name,
                    key=unquote_plus(obj.key),  # S3 URL-encodes keys in notifications
                    etag=obj.etag.strip('"') or None,
                    size=int(obj.get("size", 0) or 0),
                )
            )
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedNotification(f"S3 record is incomplete ({exc!r})") from None
    return events
