"""One DynamoDB codec: typed attribute values <-> plain Python (ints, floats, bytes), and the
one format of the timestamps the tables hold."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import Binary, TypeDeserializer, TypeSerializer

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def plain(value: Any) -> Any:
    """DynamoDB values as JSON-friendly Python: Decimal -> int or float, recursively."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [plain(v) for v in value]
    if isinstance(value, Binary):
        return bytes(value.value)
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


def serialize_item(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _serializer.serialize(_dynamo_ready(v)) for k, v in item.items()}


def deserialize_item(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: plain(_deserializer.deserialize(v)) for k, v in item.items()}


def timestamp(at: datetime) -> str:
    """A stored timestamp: ISO 8601 in UTC, milliseconds, `Z` (sorts as it reads)."""
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def utc_now() -> str:
    """Now, as a stored timestamp."""
    return timestamp(datetime.now(UTC))
