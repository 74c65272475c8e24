"""Embed requests as they reach the embed DAG: SQS message bodies carried by the asset events
of its queue watcher. A message only rings the doorbell (the watcher's trigger deleted it on
reception): which images a run embeds and how often one is retried is decided from the
records (`pending_cutoff` here, `attempts`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

log = logging.getLogger(__name__)


def _bodies(messages: Iterable[Any]) -> list[dict[str, Any]]:
    bodies = []
    for message in messages:
        try:
            body = json.loads(message) if isinstance(message, (str, bytes)) else message
            str(body["image_id"])
        except (json.JSONDecodeError, KeyError, TypeError):
            log.warning("ignoring an embed request that is not {image_id, ...}: %r", message)
            continue
        bodies.append(body)
    return bodies


def requested_ids(messages: Iterable[Any]) -> list[str]:
    """Image ids from embed-queue message bodies (dicts or JSON strings); junk is skipped."""
    return list(dict.fromkeys(str(body["image_id"]) for body in _bodies(messages)))


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


def pending_cutoff(run_type: str, now: datetime, grace_minutes: float) -> str:
    """The `created_at` before which a run embeds every pending image, requested or not.

    Only the scheduled safety net leaves the newest images (`grace_minutes`) to the runs their
    own messages trigger. Every other run sweeps all of them: Airflow 3.3's scheduler gives an
    asset-triggered run only the events up to its queue entry's first one, so events that
    arrive while a run is being created are consumed by no run (apache/airflow#56050, #54659)
    and their images would otherwise wait for the schedule."""
    cutoff = now - timedelta(minutes=grace_minutes) if run_type == "scheduled" else now
    return cutoff.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
