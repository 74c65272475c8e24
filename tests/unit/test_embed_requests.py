"""Embed requests from queue bodies, and which pending images a run takes."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from pipeline.embedding.embed_requests import pending_cutoff, requested_ids


def test_ids_come_once_each_in_order_and_junk_is_skipped():
    bodies = [
        json.dumps({"image_id": "a", "s3_key": "uploads/a.jpg", "etag": "e"}),
        {"image_id": "a", "priority": True},
        {"image_id": "b"},
        "not json",
        {"no": "id"},
    ]
    assert requested_ids(bodies) == ["a", "b"]


def test_only_the_scheduled_run_leaves_the_newest_pending_images_to_their_own_runs():
    now = datetime(2026, 11, 22, 12, 0, 0, 123456, tzinfo=UTC)
    assert pending_cutoff("scheduled", now, 10) == "2026-11-22T11:50:00.123Z"
    # an event-triggered run also takes images whose events no run consumed; a manual one
    # embeds everything pending, as a user triggering it expects
    for run_type in ("asset_triggered", "manual"):
        assert pending_cutoff(run_type, now, 10) == "2026-11-22T12:00:00.123Z"
