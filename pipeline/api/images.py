"""The logic behind POST /images and GET /images/{image_id}, free of any web framework."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from pipeline.errors import ApiError
from pipeline.ingest.ingestor import Ingestor
from pipeline.ingest.validation import InvalidImage, validate_image
from pipeline.prompts import InvalidPrompt, checked_prompt
from pipeline.settings import Limits
from pipeline.storage.images_table import DELETED
from pipeline.storage.keys import image_key, new_image_id

# What GET /images/{id} shows of a record; bookkeeping attributes stay internal.
PUBLIC_FIELDS = (
    "image_id",
    "created_at",
    "prompt",
    "modified_prompt",
    "source",
    "s3_key",
    "content_type",
    "width",
    "height",
    "size_bytes",
    "sha256",
    "status",
    "error",
    "generation",
    "duplicate_of",
    "near_duplicate_of",
)


@dataclass(frozen=True)
class Upload:
    data: bytes
    prompt: str | None


def decode_upload(image_data: str, prompt: str | None, limits: Limits) -> Upload:
    """The image bytes and normalized prompt of a POST /images body (whose shape the request
    model has checked), or the ApiError that explains why not."""
    data = _decode_base64(image_data)
    if prompt is None:
        return Upload(data=data, prompt=None)
    try:
        return Upload(data=data, prompt=checked_prompt(prompt, limits.max_prompt_chars))
    except InvalidPrompt as exc:
        raise ApiError(400, "invalid_prompt", str(exc)) from None


def _decode_base64(encoded: str) -> bytes:
    if encoded.startswith("data:") and "," in encoded:  # tolerate data URLs
        encoded = encoded.split(",", 1)[1]
    try:
        return base64.b64decode("".join(encoded.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "invalid_base64", "image_data is not valid base64") from None


def store_upload(upload: Upload, ingestor: Ingestor) -> dict[str, Any]:
    """Validate, store under uploads/ and record it now (the S3 event then finds it done)."""
    limits = ingestor.settings.limits
    try:
        info = validate_image(upload.data, limits, max_bytes=limits.max_image_bytes)
    except InvalidImage as exc:
        raise ApiError(exc.http_status, exc.code, exc.message) from None
    image_id = new_image_id()
    key = image_key(ingestor.settings.upload_prefix, image_id, info.extension)
    metadata = {"prompt": upload.prompt} if upload.prompt else {}
    result = ingestor.store(key, upload.data, info.content_type, metadata)
    return {"image_id": result.image_id, "s3_key": key, "status": "pending"}


def image_view(ingestor: Ingestor, image_id: str, expires_in: int) -> dict[str, Any]:
    """The public record of an image with a presigned download URL."""
    record = ingestor.images.get(image_id)
    if record is None:
        raise ApiError(404, "image_not_found", f"no image {image_id}")
    if record["status"] == DELETED:
        raise ApiError(410, "image_deleted", f"image {image_id} was deleted")
    view = {k: record[k] for k in PUBLIC_FIELDS if k in record}
    view["url"] = ingestor.objects.presign_get(record["s3_key"], expires_in)
    view["url_expires_in"] = expires_in
    return view
