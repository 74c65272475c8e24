"""
### redrive_dlq: send dead-letter messages back to their queue

Manual only. Moves up to `limit` messages from a dead-letter queue (`ingest`: the ingest
queue's DLQ, S3 events that failed ingest 5 times; `embed`: the embed queue's) back to the
queue it serves, where they are processed again. Ingest is idempotent per object version, so
a message that already succeeded once changes nothing.

Redrive after fixing what made them fail (`pipeline_health`'s log names the queue); messages
that fail again return to the DLQ after 5 more tries.

**When it fails**: the log names the queue it could not read or write (wrong names in the
environment, or the connection's role lacks `sqs:ReceiveMessage` / `sqs:SendMessage`). Nothing
is lost: a message leaves the DLQ only after its copy was sent.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from airflow.sdk import Param, dag, get_current_context, task

log = logging.getLogger(__name__)

AWS_CONN_ID = "aws_default"


@dag(
    dag_id="redrive_dlq",
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    tags=["imgsim", "monitoring"],
    doc_md=__doc__,
    params={
        "queue": Param("ingest", enum=["ingest", "embed"], description="whose DLQ to redrive"),
        "limit": Param(10_000, type="integer", minimum=1),
    },
    default_args={"retries": 0},
)
def redrive_dlq() -> None:
    @task
    def redrive() -> dict[str, Any]:
        from pipeline.airflow_connection import settings_from_connection
        from pipeline.monitoring.redrive import redrive as move

        params = get_current_context()["params"]
        settings = settings_from_connection(AWS_CONN_ID)
        queue = settings.ingest_queue if params["queue"] == "ingest" else settings.embed_queue
        result = move(settings, f"{queue}-dlq", queue, limit=params["limit"])
        log.info("moved %d message(s) from %s to %s", result.moved, result.source, result.target)
        return {"source": result.source, "target": result.target, "moved": result.moved}

    redrive()


redrive_dlq_dag = redrive_dlq()
