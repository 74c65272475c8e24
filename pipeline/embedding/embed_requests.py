"""Embed requests as they reach the embed DAG: SQS message bodies carried by the asset events
of its queue watcher."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Any

log = logging.getLogger(__name__)


def requested_ids(messages: Iterable[Any]) -> list[str]:
    """Image ids from embed-queue message bodies (dicts or JSON strings); junk is skipped."""
    ids: list[str] = []
    for message in messages:
        try:
            body = json.loads(message) if isinstance(message, (str, bytes)) else message
            ids.append(str(body["image_id"]))
        except (json.JSONDecodeError, KeyError, TypeError):
            log.warning("ignoring an embed request that is not {image_id, ...}: %r", message)
    return list(dict.fromkeys(ids))


def messages_from_asset_events(extras: Iterable[dict[str, Any]]) -> list[Any]:
    """Embed-queue message bodies carried by asset events an SQS AssetWatcher created
    (extra = {"from_trigger": True, "payload": {"message_batch": [{"Body": ...}, ...]}})."""
    bodies = []
    for extra in extras:
        payload = (extra or {}).get("payload") or {}
        for message in payload.get("message_batch") or []:
            if isinstance(message, dict) and "Body" in message:
                bodies.append(message["Body"])
    return bodies
