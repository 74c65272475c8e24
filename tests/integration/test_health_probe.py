"""The health probe on moto: by default the pending images from Pending_GSI (no Scan of the
Images table), on request the whole table in parallel segments, each item once."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from pipeline import aws
from pipeline.monitoring.health import SCAN_SEGMENTS, PipelineProbe, summarized
from pipeline.storage.images_table import PENDING_SHARDS, ImageStore
from tests.helpers import embedded_image


def test_the_images_table_is_read_in_parallel_segments_each_item_once(stack):
    settings = stack.settings
    images = ImageStore(settings)
    for n in range(60):
        status = ("embedded", "pending", "failed")[n % 3]
        record = embedded_image(f"img{n:03d}", "a cat", status)
        images.put_version(replace(record, created_at=f"2026-11-22T10:{n:02d}:00.000Z"))
    client = aws.client(settings, "dynamodb")
    scans: list[tuple[int, int]] = []
    client.meta.events.register(
        "before-parameter-build.dynamodb.Scan",
        lambda params, **_: scans.append((params["Segment"], params["TotalSegments"])),
    )
    probe = PipelineProbe(settings, dynamodb=client)

    counts, oldest = summarized(probe.image_tally(), datetime(2026, 11, 22, 12, tzinfo=UTC))
    assert {status: sum(by_source.values()) for status, by_source in counts.items()} == {
        "embedded": 20,
        "pending": 20,
        "failed": 20,
    }
    assert oldest is not None and oldest["image_id"] == "img001"
    assert {segment for segment, _ in scans} == set(range(SCAN_SEGMENTS))
    assert {total for _, total in scans} == {SCAN_SEGMENTS}


def _catalogue(settings) -> None:
    """Pending images of both sources among many more that are not pending."""
    images = ImageStore(settings)
    for n in range(90):
        status = ("embedded", "pending", "failed", "embedded", "embedded")[n % 5]
        record = replace(
            embedded_image(f"img{n:03d}", "a cat", status),
            created_at=f"2026-11-22T{10 + n // 60:02d}:{n % 60:02d}:00.000Z",
            source=("uploaded", "generated")[n % 2],
        )
        images.put_version(record)
    images.mark_deleted("img006", "etag-img006", "a cat", "2026-11-22T11:50:00.000Z", None)


def test_the_default_report_reads_the_pending_index_not_the_table(stack):
    settings = stack.settings
    _catalogue(settings)
    client = aws.client(settings, "dynamodb")
    calls: list[str] = []
    client.meta.events.register("before-call.dynamodb", lambda model, **_: calls.append(model.name))
    now = datetime(2026, 11, 22, 12, tzinfo=UTC)

    report = PipelineProbe(settings, dynamodb=client).report(now)

    assert "Scan" not in calls and calls.count("Query") == PENDING_SHARDS
    full, oldest = summarized(PipelineProbe(settings).image_tally(), now)
    assert report.images_counted == "pending"
    assert report.images == {"pending": full["pending"]}
    assert sum(full["pending"].values()) == 17  # 18 pending, one deleted since
    assert set(full) == {"embedded", "pending", "failed", "deleted"}
    assert report.oldest_pending == oldest
    assert oldest is not None and oldest["image_id"] == "img001"


def test_the_full_count_on_request_scans_every_image(stack):
    settings = stack.settings
    _catalogue(settings)
    now = datetime(2026, 11, 22, 12, tzinfo=UTC)
    pending_only = PipelineProbe(settings).report(now)

    report = PipelineProbe(settings).report(now, all_images=True)

    assert report.images_counted == "all"
    assert report.images == summarized(PipelineProbe(settings).image_tally(), now)[0]
    assert sum(n for by_source in report.images.values() for n in by_source.values()) == 90
    assert report.images["pending"] == pending_only.images["pending"]
    assert report.oldest_pending == pending_only.oldest_pending
