"""The Images table: image records and the conditional writes that keep ingest idempotent."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from pipeline import aws
from pipeline.settings import Settings

PENDING, EMBEDDED, FAILED = "pending", "embedded", "failed"

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


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


def plain(value: Any) -> Any:
    """DynamoDB values as JSON-friendly Python: Decimal -> int or float, recursively."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [plain(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    return value


def _dynamo_ready(value: Any) -> Any:
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, Mapping):
        return {k: _dynamo_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_dynamo_ready(v) for v in value]
    return value


def _serialize(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _serializer.serialize(_dynamo_ready(v)) for k, v in item.items()}


def _deserialize(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: plain(_deserializer.deserialize(v)) for k, v in item.items()}


class ImageStore:
    """Images table adapter. Takes a DynamoDB client, or makes one from settings."""

    def __init__(self, settings: Settings, client: Any | None = None) -> None:
        self._table = settings.images_table
        self._settings = settings
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = aws.client(self._settings, "dynamodb")
        return self._client

    def get(self, image_id: str) -> dict[str, Any] | None:
        response = self.client.get_item(
            TableName=self._table, Key={"image_id": {"S": image_id}}, ConsistentRead=True
        )
        item = response.get("Item")
        return _deserialize(item) if item else None

    def put_version(self, record: ImageRecord) -> PutOutcome:
        """Write the record unless this exact object version (key + ETag) is recorded already,
        or the id belongs to another key. On refusal, the item that is there is returned."""
        try:
            self.client.put_item(
                TableName=self._table,
                Item=_serialize(record.to_item()),
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
            return PutOutcome(written=False, existing=_deserialize(old) if old else self.get(
                record.image_id))
        return PutOutcome(written=True)

    def mark_embed_requested(self, image_id: str, etag: str, at: str) -> bool:
        """Note that the embed request for this version was sent; False if the version moved on."""
        try:
            self.client.update_item(
                TableName=self._table,
                Key={"image_id": {"S": image_id}},
                UpdateExpression="SET embed_requested_at = :at",
                ConditionExpression="etag = :etag",
                ExpressionAttributeValues={":at": {"S": at}, ":etag": {"S": etag}},
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True
