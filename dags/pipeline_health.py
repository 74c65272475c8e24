"""
### pipeline_health: is anything stuck?

Every 5 minutes, one look at the whole pipeline:

* **measure** counts the `pending` images by source (`uploaded`, `generated`), finds the
  oldest of them, and reads the depth of the ingest queue, its dead-letter queue and the
  embed queue. With `count_all_images` on it counts every image by status (`pending`,
  `embedded`, `failed`, `deleted`) instead; `images_counted` says which (`pending` or `all`).
  The numbers are in this task's log, in its return value (XCom) and in the extra of each
  `imgsim_pipeline_health` asset event (Assets view): a history of the pipeline's state.
* **assess** turns red when a dead-letter queue holds more than `max_dlq_messages` messages,
  or an image has been `pending` for more than `max_pending_minutes`; its log says which.

**When it fails** (`assess` is red)

* *dead-letter queue holds messages*: S3 events that failed ingest 5 times. Read them (`aws
  sqs receive-message` on the DLQ, the ingest Lambda's log with the same correlation id), fix
  the cause, then trigger the `redrive_dlq` DAG (or run `imgsim redrive`) to send them back.
* *an image has been pending too long*: look at the latest `embed_images` runs (a failed
  run's images wait for a later run; a skipped run found nothing to embed yet).
  `GET /embeddings/<id>` rings the embed queue for that image once more.

The embed queue has no dead-letter queue: its messages are deleted as the watcher receives
them, so a failed embedding is counted on the image's record instead. After 4 failed attempts
the image is `failed` with the reason `embedding_gave_up: ...` (counted under `failed` here);
once the cause is fixed, the `redrive_dlq` DAG with queue `embed` sends them back.

`measure` reads only the pending images, from the Images table's sparse `Pending_GSI` (16
small Queries, one per shard of the index): its cost follows the backlog, not the catalogue.
`count_all_images` reads every Images item instead (four attributes each, of every prompt) in
8 parallel Scan segments: its time and read units grow with the whole table, so trigger it by
hand when the full tally is wanted rather than scheduling it.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import Asset, Param, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException

log = logging.getLogger(__name__)

AWS_CONN_ID = "aws_default"
health_asset = Asset(name="imgsim_pipeline_health")


@dag(
    dag_id="pipeline_health",
    schedule="*/5 * * * *",
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    tags=["imgsim", "monitoring"],
    doc_md=__doc__,
    params={
        "max_pending_minutes": Param(
            60,
            type="number",
            minimum=0,
            description="an image pending longer than this turns the run red",
        ),
        "max_dlq_messages": Param(
            0,
            type="integer",
            minimum=0,
            description="a dead-letter queue holding more messages than this turns the run red",
        ),
        "count_all_images": Param(
            False,
            type="boolean",
            description="count every image by status (a Scan of the whole Images table) "
            "instead of the pending ones only",
        ),
    },
    default_args={"retries": 0},
)
def pipeline_health() -> None:
    @task(outlets=[health_asset], retries=1, retry_delay=timedelta(seconds=30))
    def measure() -> dict[str, Any]:
        from pipeline.airflow_connection import settings_from_connection
        from pipeline.monitoring.health import PipelineProbe

        all_images = bool(get_current_context()["params"]["count_all_images"])
        probe = PipelineProbe(settings_from_connection(AWS_CONN_ID))
        report = probe.report(datetime.now(UTC), all_images=all_images)
        log.info("images counted: %s", report.images_counted)
        for status, sources in report.images.items():
            log.info("images %s: %s", status, sources)
        for queue, depth in report.queues.items():
            log.info("queue %s: %d message(s)", queue, depth)
        log.info("oldest pending image: %s", report.oldest_pending or "none")
        data = report.to_dict()
        get_current_context()["outlet_events"][health_asset].extra = data
        return data

    @task
    def assess(data: dict[str, Any]) -> None:
        from pipeline.monitoring.health import HealthReport, Thresholds, problems

        params = get_current_context()["params"]
        thresholds = Thresholds(
            max_pending_minutes=params["max_pending_minutes"],
            max_dlq_messages=params["max_dlq_messages"],
        )
        found = problems(HealthReport(**data), thresholds)
        if found:
            for problem in found:
                log.error("%s", problem)
            raise AirflowFailException("; ".join(found))
        log.info("healthy: no dead-letter messages, nothing pending too long")

    assess(measure())  # type: ignore[arg-type]  # an XComArg: the dict, resolved at run time


pipeline_health_dag = pipeline_health()
