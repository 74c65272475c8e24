"""The bucket: fetch an exact object version, store uploads, presign downloads."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from string import punctuation
from typing import Any
from urllib.parse import quote, unquote

from botocore.exceptions import ClientError

from pipeline import aws
from pipeline.settings import Settings

_HEADER_SAFE = punctuation.replace("%", "") + " "


def encode_metadata(values: Mapping[str, str]) -> dict[str, str]:
    """S3 user metadata travels as HTTP headers (ASCII): percent-encode UTF-8 values."""
    return {k: quote(v, safe=_HEADER_SAFE) for k, v in values.items()}


def decode_metadata(values: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): unquote(v) for k, v in values.items()}


@dataclass(frozen=True)
class StoredObject:
    """One version of one object, identified by key and ETag."""

    key: str
    etag: str
    size: int
    content_type: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    body: bytes | None = None  # None when the object was too large to read


class ObjectStore(aws.Adapter):
    """Bucket adapter."""

    service = "s3"

    def __init__(self, settings: Settings, client: Any | None = None) -> None:
        super().__init__(settings, client)
        self.bucket = settings.bucket

    def fetch(self, key: str, etag: str | None, max_bytes: int) -> StoredObject | None:
        """The object if it still is the version the event announced; None if it was
        replaced or deleted since (the newer version has an event of its own)."""
        extra = {"IfMatch": etag} if etag else {}
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key, **extra)
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("PreconditionFailed", "NoSuchKey", "404", "412"):
                return None
            raise
        size = int(response["ContentLength"])
        stream = response["Body"]
        try:
            body = stream.read() if size <= max_bytes else None
        finally:
            stream.close()
        return StoredObject(
            key=key,
            etag=response["ETag"].strip('"'),
            size=size,
            content_type=response.get("ContentType"),
            metadata=decode_metadata(response.get("Metadata", {})),
            body=body,
        )

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def put(self, key: str, data: bytes, content_type: str, metadata: Mapping[str, str]) -> str:
        """Store the bytes and return the new version's ETag."""
        response = self.client.put_object(
            Bucket=self.bucket,
            Key=key,
            Body=data,
            ContentType=content_type,
            Metadata=encode_metadata(metadata),
        )
        return response["ETag"].strip('"')

    def delete(self, key: str) -> None:
        """Remove the object (S3 answers the same whether or not it was there)."""
        self.client.delete_object(Bucket=self.bucket, Key=key)

    def presign_get(self, key: str, expires_in: int) -> str:
        return self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires_in
        )
