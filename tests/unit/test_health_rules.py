"""pipeline.monitoring.health's pure core: counts, the oldest pending image, and when the
pipeline counts as unhealthy."""

from __future__ import annotations

from datetime import UTC, datetime

from pipeline.monitoring.health import HealthReport, Thresholds, problems, summarize_images

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def _item(image_id, status, source="uploaded", created_at="2026-11-22T11:50:00.000Z"):
    return {"image_id": image_id, "status": status, "source": source, "created_at": created_at}


def test_counts_by_status_and_source_and_the_oldest_pending():
    images, oldest = summarize_images(
        [
            _item("a", "embedded"),
            _item("b", "embedded", "generated"),
            _item("c", "pending", created_at="2026-11-22T10:00:00.000Z"),
            _item("d", "pending", "generated", created_at="2026-11-22T11:30:00.000Z"),
            _item("e", "failed"),
        ],
        NOW,
    )
    assert images == {
        "embedded": {"generated": 1, "uploaded": 1},
        "failed": {"uploaded": 1},
        "pending": {"generated": 1, "uploaded": 1},
    }
    assert oldest == {
        "image_id": "c",
        "created_at": "2026-11-22T10:00:00.000Z",
        "age_minutes": 120.0,
    }


def test_nothing_pending_has_no_oldest():
    assert summarize_images([_item("a", "embedded")], NOW)[1] is None


def _report(dlq=0, oldest_minutes=None):
    oldest = None
    if oldest_minutes is not None:
        oldest = {"image_id": "x", "created_at": "t", "age_minutes": oldest_minutes}
    return HealthReport(
        checked_at="now",
        images={},
        queues={"in": 3, "in-dlq": dlq},
        oldest_pending=oldest,
        dead_letter_queues=["in-dlq"],
    )


def test_healthy_when_no_dead_letters_and_nothing_waits_too_long():
    assert problems(_report(oldest_minutes=59), Thresholds(max_pending_minutes=60)) == []


def test_each_problem_says_what_and_what_to_do():
    found = problems(_report(dlq=2, oldest_minutes=61), Thresholds(max_pending_minutes=60))
    assert len(found) == 2
    assert "in-dlq holds 2 message(s)" in found[0] and "redrive" in found[0]
    assert "image x has been pending for 61 min" in found[1] and "embed_images" in found[1]


def test_dead_letters_up_to_the_allowance_are_tolerated():
    assert problems(_report(dlq=2), Thresholds(max_dlq_messages=2)) == []
