"""Embed requests as they reach the embed DAG: SQS message bodies carried by the asset events
of its queue watcher, and the backoff of the requests a failed run sends again.

A first request has no `attempt`; a run that fails for good (after its task retries) sends
each of its still-pending images again with `attempt` one higher, delivered after
`retry_delay(attempt)` seconds (SQS DelaySeconds): 30, 60, 120, 120, ... so an image is
embedded within about two minutes of the service coming back. After `MAX_ATTEMPTS` the
15-minute safety-net schedule is left to pick the image up (it is still pending).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

log = logging.getLogger(__name__)

FIRST_RETRY_DELAY_SECONDS = 30
MAX_RETRY_DELAY_SECONDS = 120  # a longer wait would delay the embedding after a recovery
MAX_ATTEMPTS = 8  # about 14 minutes of re-requests; then the 15-minute schedule takes over
SQS_MAX_DELAY_SECONDS = 900


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


def requested_attempts(messages: Iterable[Any]) -> dict[str, int]:
    """{image id: the highest `attempt` among its requests} (0: only first requests)."""
    attempts: dict[str, int] = {}
    for body in _bodies(messages):
        attempt = body.get("attempt", 0)
        attempt = attempt if isinstance(attempt, int) and not isinstance(attempt, bool) else 0
        image_id = str(body["image_id"])
        attempts[image_id] = max(attempts.get(image_id, 0), max(attempt, 0))
    return attempts


def retry_delay(attempt: int) -> int:
    """Seconds before re-request number `attempt` (1, 2, ...) is delivered."""
    delay = FIRST_RETRY_DELAY_SECONDS * 2 ** max(attempt - 1, 0)
    return min(delay, MAX_RETRY_DELAY_SECONDS, SQS_MAX_DELAY_SECONDS)


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
