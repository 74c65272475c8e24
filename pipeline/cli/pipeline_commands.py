"""`health` and `redrive`: what the pipeline_health and redrive_dlq DAGs do, from a terminal."""

from __future__ import annotations

from datetime import UTC, datetime

from pipeline.cli.errors import FAILED, CliError
from pipeline.cli.output import Output
from pipeline.monitoring.health import PipelineProbe, Thresholds, problems
from pipeline.monitoring.redrive import redrive_named
from pipeline.settings import Settings


def health(
    settings: Settings, thresholds: Thresholds, out: Output, all_images: bool = False
) -> None:
    which = "all images" if all_images else "pending images"
    with out.busy(f"counting {which} and reading queue depths ..."):
        report = PipelineProbe(settings).report(datetime.now(UTC), all_images=all_images)
    image_rows = [
        {"status": status, "source": source, "images": count}
        for status, sources in report.images.items()
        for source, count in sources.items()
    ]
    out.table(f"images ({report.images_counted})", ["status", "source", "images"], image_rows)
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


def redrive(settings: Settings, queue: str, out: Output) -> None:
    with out.busy(f"sending the failed {queue} work back ..."):
        result = redrive_named(settings, queue)
    how = f" (SQS move task {result.task_handle})" if result.task_handle else ""
    out.say(f"{result.method}: {result.moved} from {result.source} to {result.target}{how}")
    out.data(result.to_dict())
