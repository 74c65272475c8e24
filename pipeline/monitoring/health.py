"""One look at the whole pipeline: pending images by source (every image by status and
source, on request), queue depths, the oldest pending image; and the rules that call it
unhealthy."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from pipeline import aws
from pipeline.settings import Settings
from pipeline.storage.dynamodb_codec import deserialize_item
from pipeline.storage.images_table import PENDING, ImageStore

SCAN_SEGMENTS = 8  # parallel Scan segments of the Images table, read at once (all images)
PENDING_ONLY, ALL_IMAGES = "pending", "all"  # what a report's `images` counted
DEPTH_ATTRIBUTES = [
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
]


@dataclass(frozen=True)
class Thresholds:
    """When the pipeline counts as unhealthy (the pipeline_health DAG's params)."""

    max_pending_minutes: float = 60.0
    max_dlq_messages: int = 0


@dataclass(frozen=True)
class HealthReport:
    checked_at: str
    images: dict[str, dict[str, int]]  # status -> source -> count (of `images_counted`)
    queues: dict[str, int]  # queue name -> messages (visible + in flight + delayed)
    oldest_pending: dict[str, Any] | None = None  # image_id, created_at, age_minutes
    dead_letter_queues: list[str] = field(default_factory=list)
    images_counted: str = PENDING_ONLY  # "pending": Pending_GSI only; "all": the whole table

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


Tally = tuple[Counter[tuple[str, str]], Mapping[str, Any] | None]


def tally(items: Iterable[Mapping[str, Any]]) -> Tally:
    """Counts by (status, source) and the pending item recorded first: one pass, constant
    memory, and tallies of parts of the table merge (`merged`)."""
    counts: Counter[tuple[str, str]] = Counter()
    oldest: Mapping[str, Any] | None = None
    for item in items:
        status, source = str(item.get("status", "?")), str(item.get("source", "?"))
        counts[status, source] += 1
        if status == PENDING and (oldest is None or item["created_at"] < oldest["created_at"]):
            oldest = item
    return counts, oldest


def merged(tallies: Iterable[Tally]) -> Tally:
    counts: Counter[tuple[str, str]] = Counter()
    oldest: Mapping[str, Any] | None = None
    for part, first in tallies:
        counts.update(part)
        if first is not None and (oldest is None or first["created_at"] < oldest["created_at"]):
            oldest = first
    return counts, oldest


def summarize_images(
    items: Iterable[Mapping[str, Any]], now: datetime
) -> tuple[dict[str, dict[str, int]], dict[str, Any] | None]:
    """Counts by status and source, and the pending image recorded first."""
    return summarized(tally(items), now)


def summarized(
    counted: Tally, now: datetime
) -> tuple[dict[str, dict[str, int]], dict[str, Any] | None]:
    counts, oldest = counted
    by_status: dict[str, dict[str, int]] = {}
    for (status, source), count in sorted(counts.items()):
        by_status.setdefault(status, {})[source] = count
    if oldest is None:
        return by_status, None
    age = (now - parse_time(oldest["created_at"])).total_seconds() / 60
    return by_status, {
        "image_id": oldest["image_id"],
        "created_at": oldest["created_at"],
        "age_minutes": round(age, 1),
    }


def problems(report: HealthReport, thresholds: Thresholds) -> list[str]:
    """Why the pipeline is unhealthy, one sentence each; empty when it is healthy."""
    found = []
    for name in report.dead_letter_queues:
        depth = report.queues.get(name, 0)
        if depth > thresholds.max_dlq_messages:
            found.append(
                f"dead-letter queue {name} holds {depth} message(s) (allowed "
                f"{thresholds.max_dlq_messages}): events that failed 5 times; read them, fix "
                "the cause, then redrive (the redrive_dlq DAG or `imgsim redrive`)"
            )
    oldest = report.oldest_pending
    if oldest and oldest["age_minutes"] > thresholds.max_pending_minutes:
        found.append(
            f"image {oldest['image_id']} has been pending for {oldest['age_minutes']:.0f} min "
            f"(recorded {oldest['created_at']}; allowed {thresholds.max_pending_minutes:g} "
            "min): check the embed_images runs"
        )
    return found


class PipelineProbe:
    """Reads the Images table and the queues. By default only the pending images are read,
    from the sparse Pending_GSI (a Query per shard, at once): the cost follows the backlog,
    not the catalogue. On request the whole table is read (four small attributes of every
    image, of every prompt) in SCAN_SEGMENTS parallel segments. Each part is tallied on its
    own: the memory stays flat either way."""

    def __init__(self, settings: Settings, dynamodb: Any | None = None, sqs: Any | None = None):
        self.settings = settings
        self.dynamodb = dynamodb or aws.client(settings, "dynamodb")
        self.sqs = sqs or aws.client(settings, "sqs")

    def image_items(self, segment: int = 0, segments: int = 1) -> Iterable[dict[str, Any]]:
        """The items of one segment of a parallel Scan (all of them by default)."""
        pages = self.dynamodb.get_paginator("scan").paginate(
            TableName=self.settings.images_table,
            ProjectionExpression="image_id, #s, #src, created_at",
            ExpressionAttributeNames={"#s": "status", "#src": "source"},
            Segment=segment,
            TotalSegments=segments,
        )
        for page in pages:
            yield from (deserialize_item(item) for item in page.get("Items", []))

    def image_tally(self, segments: int = SCAN_SEGMENTS) -> Tally:
        """The whole table's tally, its segments scanned at once."""
        with ThreadPoolExecutor(segments) as pool:
            parts = pool.map(lambda n: tally(self.image_items(n, segments)), range(segments))
            return merged(list(parts))

    def pending_tally(self) -> Tally:
        """The pending images' tally from Pending_GSI, its shards queried at once (each
        oldest first, so its first item is its oldest). The index follows the table a
        moment behind, as an eventually consistent Scan does."""
        store = ImageStore(self.settings, self.dynamodb)

        def shard_tally(items: Iterable[Mapping[str, Any]]) -> Tally:
            return tally({**item, "status": PENDING} for item in items)

        return merged(store.over_pending_shards(shard_tally))

    def queue_names(self) -> tuple[list[str], list[str]]:
        """The pipeline's queues and, of those, the dead-letter queues: the ingest queue's
        only (embed-queue messages are deleted on reception; an embedding's failures are
        counted on its image record, and one out of attempts is a `failed` image)."""
        s = self.settings
        dlqs = [f"{s.ingest_queue}-dlq"]
        return [s.ingest_queue, s.embed_queue, *dlqs], dlqs

    def depth(self, name: str) -> int:
        url = self.sqs.get_queue_url(QueueName=name)["QueueUrl"]
        attributes = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=DEPTH_ATTRIBUTES)
        return sum(int(attributes["Attributes"].get(a, 0)) for a in DEPTH_ATTRIBUTES)

    def report(self, now: datetime, all_images: bool = False) -> HealthReport:
        """The report; `all_images` counts every image by status (a Scan of the table)
        instead of the pending ones only. The oldest pending image is the same either way."""
        counted = self.image_tally() if all_images else self.pending_tally()
        images, oldest = summarized(counted, now)
        names, dlqs = self.queue_names()
        return HealthReport(
            checked_at=now.isoformat(timespec="seconds"),
            images=images,
            queues={name: self.depth(name) for name in names},
            oldest_pending=oldest,
            dead_letter_queues=dlqs,
            images_counted=ALL_IMAGES if all_images else PENDING_ONLY,
        )
