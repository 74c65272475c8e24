"""Embed requests from queue bodies: ids, the attempt of a re-request, its delay."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from pipeline.embedding.embed_requests import (
    MAX_ATTEMPTS,
    pending_cutoff,
    requested_attempts,
    requested_ids,
    retry_delay,
)


def test_attempts_are_the_highest_per_image_and_junk_counts_as_a_first_request():
    bodies = [
        json.dumps({"image_id": "a", "s3_key": "uploads/a.jpg", "etag": "e"}),
        {"image_id": "a", "attempt": 3},
        {"image_id": "b", "attempt": 2},
        {"image_id": "b", "attempt": 1},
        {"image_id": "c", "attempt": "7"},
        {"image_id": "d", "attempt": True},
        {"image_id": "e", "attempt": -4},
        "not json",
        {"no": "id"},
    ]
    assert requested_attempts(bodies) == {"a": 3, "b": 2, "c": 0, "d": 0, "e": 0}
    assert requested_ids(bodies) == ["a", "b", "c", "d", "e"]


def test_the_delay_doubles_from_30_s_and_stays_within_two_minutes_and_sqs_limits():
    delays = [retry_delay(n) for n in range(0, MAX_ATTEMPTS + 3)]
    assert delays[:4] == [30, 30, 60, 120]
    assert max(delays) == 120 and all(0 < d <= 900 for d in delays)


def test_only_the_scheduled_run_leaves_the_newest_pending_images_to_their_own_runs():
    now = datetime(2026, 11, 22, 12, 0, 0, 123456, tzinfo=UTC)
    assert pending_cutoff("scheduled", now, 10) == "2026-11-22T11:50:00.123Z"
    # an event-triggered run also takes images whose events no run consumed; a manual one
    # embeds everything pending, as a user triggering it expects
    for run_type in ("asset_triggered", "manual"):
        assert pending_cutoff(run_type, now, 10) == "2026-11-22T12:00:00.123Z"
