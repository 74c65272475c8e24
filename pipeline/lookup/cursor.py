"""Opaque page cursors of GET /similarity: an offset and the manifest version it was cut from."""

from __future__ import annotations

import base64
import binascii
import json

from pipeline.errors import ApiError


def encode_cursor(offset: int, version: int) -> str:
    raw = json.dumps({"o": offset, "v": version}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


MAX_CURSOR_CHARS = 128  # the cursors this API returns are far shorter


def decode_cursor(cursor: str) -> int:
    refused = ApiError(400, "invalid_cursor", "cursor is not one this API returned")
    if len(cursor) > MAX_CURSOR_CHARS:
        raise refused
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        offset = json.loads(raw)["o"]
    except (binascii.Error, ValueError, KeyError, TypeError, RecursionError):
        raise refused from None
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise refused
    return offset
