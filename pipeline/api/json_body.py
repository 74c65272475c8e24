"""A request body that must be one JSON object, within the size limit."""

from __future__ import annotations

import json
from typing import Any

from pipeline.errors import ApiError


def parse_json(body: bytes, limit: int) -> dict[str, Any]:
    if len(body) > limit:
        raise ApiError(413, "payload_too_large", f"request body is over {limit} bytes")
    try:
        payload = json.loads(body or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError):
        payload = None
    if not isinstance(payload, dict):
        raise ApiError(400, "invalid_json", "request body must be a JSON object")
    return payload
