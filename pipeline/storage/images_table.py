"""The Images table: image records and the conditional writes that keep ingest idempotent."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from pipeline import aws
from pipeline.settings import Settings
from pipeline.storage.dynamodb_codec import deserialize_item, serialize_item

PENDING, EMBEDDED, FAILED = "pending", "embedded", "failed"
BATCH_ATTEMPTS = 8  # BatchGetItem calls for one chunk of keys, backing off between them


@dataclass(frozen=True)
class ImageRecord:
    """One item of the Images table (DESIGN.md section 2)."""

    image_id: str
    created_at: str
    s3_key: str
    source: str
    status: str
    etag: str
    size_bytes: int
    content_type: str | None = None
    width: int | None = None
    height: int | None = None
    sha256: str | None = None
    prompt: str | None = None
    modified_prompt: str | None = None
    generation: Mapping[str, Any] | None = None
    error: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_item(self) -> dict[str, Any]:
        """The item without empty attributes (a GSI key may be absent, never null)."""
        data = asdict(self)
        data.update(data.pop("extra"))
        return {k: v for k, v in data.items() if v is not None}


@dataclass(frozen=True)
class PutOutcome:
    written: bool
    existing: dict[str, Any] | None = None


class ImageStore(aws.Adapter):
    """Images table adapter."""

    service = "dynamodb"

    def __init__(self, settings: Settings, client: Any | None = None) -> None:
        super().__init__(settings, client)
        self.table = settings.images_table

    def get(self, image_id: str) -> dict[str, Any] | None:
        response = self.client.get_item(
            TableName=self.table, Key={"image_id": {"S": image_id}}, ConsistentRead=True
        )
        item = response.get("Item")
        return deserialize_item(item) if item else None

    def put_version(self, record: ImageRecord) -> PutOutcome:
        """Write the record unless this exact object version (key + ETag) is recorded already,
        or the id belongs to another key. On refusal, the item that is there is returned."""
        try:
            self.client.put_item(
                TableName=self.table,
                Item=serialize_item(record.to_item()),
                ConditionExpression="attribute_not_exists(image_id) OR "
                "(s3_key = :key AND etag <> :etag)",
                ExpressionAttributeValues={
                    ":key": {"S": record.s3_key},
                    ":etag": {"S": record.etag},
                },
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except self.client.exceptions.ConditionalCheckFailedException as exc:
            old = exc.response.get("Item")
            return PutOutcome(
                written=False, existing=deserialize_item(old) if old else self.get(record.image_id)
            )
        return PutOutcome(written=True)

    def set_outcome(self, image_id: str, etag: str, values: dict[str, Any]) -> bool:
        """Set attributes on the record only if it still is this version (ETag); the values
        come from the run, so a rerun writes exactly the same item."""
        names = {f"#{k}": k for k in values}
        try:
            self.client.update_item(
                TableName=self.table,
                Key={"image_id": {"S": image_id}},
                UpdateExpression="SET " + ", ".join(f"#{k} = :{k}" for k in values),
                ConditionExpression="etag = :etag_expected",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues={
                    ":etag_expected": {"S": etag},
                    **serialize_item({f":{k}": v for k, v in values.items()}),
                },
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def pending(self, created_before: str) -> list[dict[str, Any]]:
        """Images still pending that were recorded before the given time (a full scan: the
        safety net runs on a schedule, not per request)."""
        pages = self.client.get_paginator("scan").paginate(
            TableName=self.table,
            FilterExpression="#s = :pending AND created_at < :before",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={
                ":pending": {"S": PENDING},
                ":before": {"S": created_before},
            },
        )
        return [deserialize_item(item) for page in pages for item in page.get("Items", [])]

    def mark_embed_requested(self, image_id: str, etag: str, at: str) -> bool:
        """Note that the embed request for this version was sent; False if the version moved on."""
        try:
            self.client.update_item(
                TableName=self.table,
                Key={"image_id": {"S": image_id}},
                UpdateExpression="SET embed_requested_at = :at",
                ConditionExpression="etag = :etag",
                ExpressionAttributeValues={":at": {"S": at}, ":etag": {"S": etag}},
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def claim_embed_request(self, image_id: str, etag: str, at: str, stale_before: str) -> bool:
        """Note a new embed request for this pending version unless one was noted at or after
        `stale_before` (still outstanding). One conditional write: of concurrent callers, one
        gets True and sends the message."""
        try:
            self.client.update_item(
                TableName=self.table,
                Key={"image_id": {"S": image_id}},
                UpdateExpression="SET embed_requested_at = :at",
                ConditionExpression="etag = :etag AND #s = :pending AND "
                "(attribute_not_exists(embed_requested_at) OR embed_requested_at < :stale)",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={
                    ":at": {"S": at},
                    ":etag": {"S": etag},
                    ":pending": {"S": PENDING},
                    ":stale": {"S": stale_before},
                },
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def release_embed_request(self, image_id: str, at: str, previous: str | None) -> None:
        """Undo a claim whose message could not be sent (only if it is still this claim)."""
        update = "SET embed_requested_at = :previous" if previous else "REMOVE embed_requested_at"
        values = {":at": {"S": at}, **({":previous": {"S": previous}} if previous else {})}
        with contextlib.suppress(self.client.exceptions.ConditionalCheckFailedException):
            self.client.update_item(
                TableName=self.table,
                Key={"image_id": {"S": image_id}},
                UpdateExpression=update,
                ConditionExpression="embed_requested_at = :at",
                ExpressionAttributeValues=values,
            )

    def batch_get(self, image_ids: list[str], attributes: list[str]) -> dict[str, dict[str, Any]]:
        """The records of these ids that exist ({image_id: item}, only `attributes` and the
        id), read consistently in BatchGetItem calls of 100 keys."""
        names = {f"#a{i}": a for i, a in enumerate(["image_id", *attributes])}
        found: dict[str, dict[str, Any]] = {}
        unique = list(dict.fromkeys(image_ids))
        for start in range(0, len(unique), 100):
            request: dict[str, Any] = {
                self.table: {
                    "Keys": [{"image_id": {"S": i}} for i in unique[start : start + 100]],
                    "ConsistentRead": True,
                    "ProjectionExpression": ", ".join(names),
                    "ExpressionAttributeNames": names,
                }
            }
            for attempt in range(BATCH_ATTEMPTS):
                response = self.client.batch_get_item(RequestItems=request)
                for item in response.get("Responses", {}).get(self.table, []):
                    record = deserialize_item(item)
                    found[record["image_id"]] = record
                request = response.get("UnprocessedKeys") or {}
                if not request:
                    break
                time.sleep(0.02 * 2**attempt)  # throttled: back off, then ask for the rest
            else:
                raise RuntimeError(f"BatchGetItem on {self.table} left keys unprocessed")
        return found
