"""S3 event notifications as they arrive in SQS message bodies."""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import unquote_plus

from aws_lambda_powertools.utilities.data_classes import S3Event

CREATED, REMOVED = "created", "removed"


@dataclass(frozen=True)
class ObjectEvent:
    """One ObjectCreated or ObjectRemoved record. `sequencer` orders the events of one key
    (S3 always sends it; moto does not); `version_id` is set on a versioned bucket."""

    bucket: str
    key: str
    etag: str | None
    size: int | None
    kind: str = CREATED
    sequencer: str | None = None
    version_id: str | None = None


ObjectCreated = ObjectEvent  # the name the creation-only callers know


class MalformedNotification(ValueError):
    """A message body that is not an S3 notification: retrying cannot help; it ends in the DLQ."""


def object_events(body: str) -> list[ObjectEvent]:
    """The ObjectCreated and ObjectRemoved records of one SQS message body (S3's TestEvent
    has none; other event types are skipped)."""
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
            kind = _kind(record.event_name)
            if kind is None:
                continue
            obj = record.s3.get_object
            events.append(
                ObjectEvent(
                    bucket=record.s3.bucket.name,
                    key=unquote_plus(obj.key),  # S3 URL-encodes keys in notifications
                    etag=(obj.get("eTag") or "").strip('"') or None,
                    size=int(obj.get("size", 0) or 0),
                    kind=kind,
                    sequencer=obj.get("sequencer") or None,
                    version_id=obj.get("versionId") or None,
                )
            )
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedNotification(f"S3 record is incomplete ({exc!r})") from None
    return events


def object_created_events(body: str) -> list[ObjectEvent]:
    """The ObjectCreated records of one SQS message body."""
    return [e for e in object_events(body) if e.kind == CREATED]


def _kind(event_name: str) -> str | None:
    if event_name.startswith("ObjectCreated"):
        return CREATED
    if event_name.startswith("ObjectRemoved"):  # Delete, and DeleteMarkerCreated (versioned)
        return REMOVED
    return None
