"""
### redrive_dlq: send failed work back once its cause is fixed

Manual only. `queue`:

* `ingest`: the ingest queue's dead-letter queue (S3 events that failed ingest 5 times) back to
  the ingest queue. On AWS, SQS moves them itself (a message move task, as the console's "Start
  DLQ redrive"): this task starts it and returns its handle and the messages it has to move;
  `pipeline_health` turns green once the DLQ is empty. Where move tasks are not implemented
  (the local stack), this task moves them itself until the DLQ is empty. Ingest is idempotent
  per object version, so a message that already succeeded once changes nothing; one that fails
  again returns to the DLQ after 5 more tries.
* `embed`: the embed queue has no dead-letter queue (its messages are deleted on reception;
  the attempts are counted on the image records): this puts every image `failed` with
  `embedding_gave_up: ...` back to `pending`, its attempts cleared, and rings the embed queue.

**When it fails**: the log names the queue or table it could not use (wrong names in the
environment, or the connection's role lacks `sqs:StartMessageMoveTask` /
`sqs:ListMessageMoveTasks` on the DLQ, `sqs:SendMessage` on the queue). Nothing is lost: a
message leaves the DLQ only after its copy was sent.
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
        "queue": Param(
            "ingest",
            enum=["ingest", "embed"],
            description="ingest: its DLQ's messages; embed: the images that gave up",
        ),
    },
    default_args={"retries": 0},
)
def redrive_dlq() -> None:
    @task
    def redrive() -> dict[str, Any]:
        from pipeline.airflow_connection import settings_from_connection
        from pipeline.monitoring.redrive import redrive_named

        params = get_current_context()["params"]
        result = redrive_named(settings_from_connection(AWS_CONN_ID), params["queue"])
        log.info(
            "%s: %d from %s to %s%s",
            result.method,
            result.moved,
            result.source,
            result.target,
            f" (move task {result.task_handle})" if result.task_handle else "",
        )
        return result.to_dict()

    redrive()


redrive_dlq_dag = redrive_dlq()
