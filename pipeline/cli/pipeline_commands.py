"""`health` and `redrive`: what the pipeline_health and redrive_dlq DAGs do, from a terminal."""

from __future__ import annotations

from datetime import UTC, datetime

from pipeline.cli.errors import FAILED, CliError
from pipeline.cli.output import Output
from pipeline.monitoring.health import PipelineProbe, Thresholds, problems
from pipeline.monitoring.redrive import redrive as move
from pipeline.settings import Settings


def health(settings: Settings, thresholds: Thresholds, out: Output) -> None:
    with out.busy("counting images and reading queue depths ..."):
        report = PipelineProbe(settings).report(datetime.now(UTC))
    image_rows = [
        {"status": status, "source": source, "images": count}
        for status, sources in report.images.items()
        for source, count in sources.items()
    ]
    out.table("images", ["status", "source", "images"], image_rows)
    queue_rows = [{"queue": name, "messages": depth} for name, depth in report.queues.items()]
    out.table("queues", ["queue", "messages"], queue_rows)
    oldest = report.oldest_pending
    found = problems(report, thresholds)
    out.data({**report.to_dict(), "problems": found})
    if oldest:
        out.say(f"oldest pending: {oldest['image_id']} ({oldest['age_minutes']:g} min)")
    if found:
        raise CliError("; ".join(found), FAILED)
    out.say("healthy")


def redrive(settings: Settings, queue: str, limit: int, out: Output) -> None:
    name = settings.ingest_queue if queue == "ingest" else settings.embed_queue
    with out.busy(f"moving messages from {name}-dlq to {name} ..."):
        result = move(settings, f"{name}-dlq", name, limit=limit)
    out.say(f"moved {result.moved} message(s) from {result.source} to {result.target}")
    out.data({"source": result.source, "target": result.target, "moved": result.moved})
