"""The health probe's read of the Images table on moto: parallel segments, each item once."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from pipeline import aws
from pipeline.monitoring.health import SCAN_SEGMENTS, PipelineProbe, summarized
from pipeline.storage.images_table import ImageStore
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
