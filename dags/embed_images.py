"""Embed recorded images on SageMaker batch transform (the configured model); write Parquet shards.

Triggered by messages on the embed queue (an AssetWatcher on SQS; the provider's trigger
deletes each message as it receives it) and every 15 minutes as a safety net: the queue is a
doorbell, the Images status is the truth. A run embeds its requested images and every other
pending one (the scheduled run only those older than `grace_minutes`), so an image whose
message's event no run consumed (an Airflow 3.3 scheduler race, apache/airflow#56050) goes with
the next run.

**Retries** (`pipeline/embedding/attempts.py`): every run that plans an image counts one
attempt on its record (`embed_attempts`). A run that fails for good leaves its images pending;
the next run (any message, or the schedule) plans them again, no sooner than
`retry_after_minutes` after their last attempt. After 4 attempts the image is `failed` with the
reason `embedding_gave_up: ...` (the failed task and its error); `redrive_dlq` with queue
`embed` sends such images back once the cause is fixed. The embed queue has no dead-letter
queue: its messages are deleted on reception, so SQS would never count a failure.

After a model upgrade switched a prompt to a new model (`reembed`), this DAG still embeds the
prompt's new images with its own model (`model_data_url`), so they get no vector of the prompt's
active model: `follow_up` lists, per new artifact, the prompts the commit wrote that point at
another model (the artifact is on the pointer), and `trigger_reembed` (the standard provider's
`TriggerDagRunOperator`, mapped over that list) triggers one `reembed` run for each. The list
is empty unless an upgrade happened: nothing is mapped, the task is skipped, the run succeeds.

The transform job is waited for in the triggerer (`deferrable=True`): no worker slot is held
while SageMaker works. `dag.test()` runs the deferred trigger in line, `airflow standalone`
runs it in its triggerer; both poll the SageMaker emulator's DescribeTransformJob locally.

Read when Airflow parses this file: `IMGSIM_EMBED_QUEUE_URL` (required: the queue the watcher
listens to, the stack's `EmbedQueueUrl` output), and the defaults of the params below
(`IMGSIM_MODEL_DATA_URL`, `IMGSIM_SAGEMAKER_ROLE_ARN`, `IMGSIM_SAGEMAKER_IMAGE_URI`: when
empty, the settings' `IMGSIM_SERVING_IMAGE_GPU` or `_CPU` by the run's instance type, written by
`make mwaa`; where unset, sagemaker-core looks the PyTorch inference image of the connection's
region up) and `IMGSIM_TRANSFORM_POLL_SECONDS` (how often the triggerer asks about the job).

**What a run reports**: `gather`'s return value (images planned, records repaired, images
waiting for `retry_after_minutes`, images out of attempts; skipped when nothing is to be
embedded), and `commit`'s log and the extra of its `imgsim_embeddings` asset event
(Assets view): images embedded, images failed with each reason, shards written, the model and
the prompts; `follow_up`'s return value (the `reembed` confs) and each `trigger_reembed`
instance's link to the run it triggered.

**When it fails**: the failed task's log says why. `gather` or `commit`: S3/DynamoDB access
(the `aws_default` connection). `transform_config`: a param is missing (`model_data_url`,
`role_arn`). `transform`: the SageMaker job failed (its `FailureReason` is in the log; on AWS
also the job's CloudWatch logs). The run's images stay pending and a later run retries them (see
above); once the cause is fixed, clear the failed task or let the next run embed them. An image
the model refused (status `failed`, reason `embedding_failed: ...`) is not retried: upload it
again.
`pipeline_health` turns red when images wait too long. `follow_up` or `trigger_reembed` (the
images are embedded already; only the switched prompts' re-embedding is missing): clear the
task, or trigger `reembed` by hand with the conf in `follow_up`'s log.
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.common.messaging.triggers.msg_queue import MessageQueueTrigger
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import (
    Asset,
    AssetOrTimeSchedule,
    AssetWatcher,
    CronTriggerTimetable,
    Param,
    dag,
    get_current_context,
    task,
)

from pipeline.embedding.attempts import RETRY_AFTER_MINUTES
from pipeline.embedding.transform_params import AWS_CONN_ID, transform_operator, transform_params

if TYPE_CHECKING:
    from pipeline.embedding.run import EmbeddingRun

log = logging.getLogger(__name__)


def _required(variable: str, what: str) -> str:
    """An unset variable fails the import, so the reason shows as this DAG's import error in
    the Airflow UI instead of a watcher polling a made-up queue."""
    value = os.environ.get(variable, "").strip()
    if not value:
        raise RuntimeError(f"{variable} is not set: {what}")
    return value


EMBED_QUEUE_URL = _required(
    "IMGSIM_EMBED_QUEUE_URL",
    "the URL of the embed queue whose messages trigger embed_images "
    "(the stack's EmbedQueueUrl output)",
)

embeddings_asset = Asset(name="imgsim_embeddings")  # one event per commit, its report as extra

embed_requests = Asset(
    name="imgsim_embed_requests",
    uri="sqs://imgsim/embed-requests",
    watchers=[
        AssetWatcher(
            name="embed_queue_watcher",
            trigger=MessageQueueTrigger(
                scheme="sqs",
                sqs_queue=EMBED_QUEUE_URL,
                aws_conn_id=AWS_CONN_ID,
                max_messages=10,
                num_batches=10,
                waiter_delay=5,
                # the provider's default, stated: the queue is a doorbell (no DLQ, see above)
                delete_message_on_reception=True,
            ),
        )
    ],
)


def _messages(context: Any) -> list[Any]:
    """The embed-queue message bodies that triggered this run (none for a scheduled run)."""
    from pipeline.embedding.embed_requests import messages_from_asset_events

    asset_events = context.get("triggering_asset_events") or {}
    return messages_from_asset_events(
        [event.extra for events in asset_events.values() for event in events]
    )


def give_up_on_failure(context: Any) -> None:
    """A task failed for good: the run's images that had their last attempt fail, with the
    task and its error as the reason; the others stay pending for a later run."""
    from pipeline.embedding.attempts import MAX_ATTEMPTS

    cause = f"{context['task_instance'].task_id}: {context.get('exception')}"
    gave_up = _run(context["run_id"]).give_up_after_failure(cause)
    log.warning(
        "embed run %s failed in %s; failed after %s attempts: %s",
        context["run_id"],
        cause,
        MAX_ATTEMPTS,
        gave_up or "none",
    )


def _run(run_id: str) -> EmbeddingRun:
    from pipeline.airflow_connection import settings_from_connection
    from pipeline.embedding.run import EmbeddingRun

    return EmbeddingRun(settings_from_connection(AWS_CONN_ID), run_id)


@dag(
    dag_id="embed_images",
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("*/15 * * * *", timezone="UTC"), assets=[embed_requests]
    ),
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    tags=["imgsim", "embedding"],
    doc_md=__doc__,
    params={
        "model_data_url": Param(
            os.environ.get("IMGSIM_MODEL_DATA_URL", ""),
            type="string",
            description="s3:// URI of the embedding model.tar.gz",
        ),
        **transform_params(),
        "grace_minutes": Param(
            10,
            type="number",
            minimum=0,
            description="a scheduled run embeds pending images older than this; other runs "
            "embed every pending image",
        ),
        "retry_after_minutes": Param(
            RETRY_AFTER_MINUTES,
            type="number",
            minimum=0,
            description="an image whose last attempt failed is planned again no sooner than "
            "this (0: by the next run)",
        ),
    },
    default_args={
        "retries": 2,
        "retry_delay": timedelta(seconds=30),
        "on_failure_callback": give_up_on_failure,
    },
)
def embed_images() -> None:
    @task
    def gather() -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowSkipException

        from pipeline.embedding.attempts import retry_before
        from pipeline.embedding.embed_requests import pending_cutoff, requested_ids

        context = get_current_context()
        now, params = datetime.now(UTC), context["params"]
        run = _run(context["run_id"])
        summary = run.gather(
            requested_ids(_messages(context)),
            pending_before=pending_cutoff(
                context["dag_run"].run_type, now, params["grace_minutes"]
            ),
            run_at=now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            retry_before=retry_before(now, params["retry_after_minutes"]),
        )
        for image_id in summary["gave_up"]:
            log.warning("not embedded: %s: out of attempts", image_id)
        if summary["count"] == 0:
            raise AirflowSkipException(
                f"nothing to embed ({summary['repaired']} repaired, {len(summary['waiting'])} "
                f"waiting to be retried, {len(summary['gave_up'])} out of attempts)"
            )
        return summary

    @task
    def transform_config() -> dict[str, Any]:
        from pipeline.embedding.transform_config import transform_config as build

        context = get_current_context()
        params = context["params"]
        if not params["model_data_url"]:
            raise ValueError("set the model_data_url param (or IMGSIM_MODEL_DATA_URL)")
        if not params["role_arn"]:
            raise ValueError(
                "set the role_arn param (or IMGSIM_SAGEMAKER_ROLE_ARN): the SageMaker "
                "execution role, the stack's SageMakerRoleArn output"
            )
        return build(
            _run(context["run_id"]),
            params["model_data_url"],
            params["role_arn"],
            params["instance_type"],
            params["instance_count"],
            params["image_uri"],
            framework_version=params["framework_version"],
            environment=params["model_environment"],
        )

    @task(outlets=[embeddings_asset])
    def commit() -> dict[str, Any]:
        context = get_current_context()
        report = _run(context["run_id"]).commit()
        log.info(
            "embedded %s, failed %s; shards %s",
            report["embedded"],
            report["failed"],
            report["shards"],
        )
        for failure in report.get("failures", []):
            log.warning("not embedded: %s: %s", failure["image_id"], failure["error"])
        context["outlet_events"][embeddings_asset].extra = report
        return report

    @task
    def follow_up(report: dict[str, Any]) -> list[dict[str, Any]]:
        """The `reembed` runs (conf and run id) for prompts the commit wrote whose pointer
        names another model."""
        from pipeline.airflow_connection import settings_from_connection
        from pipeline.embedding.transform_params import transform_settings
        from pipeline.storage.active_models import ActiveModels
        from pipeline.upgrade.follow_up import follow_up_runs, triggers

        context = get_current_context()
        runs = follow_up_runs(ActiveModels(settings_from_connection(AWS_CONN_ID)), report)
        for conf in runs:
            log.info("switched prompts embedded with %s: reembed %s", report["model_id"], conf)
        return triggers(runs, context["run_id"], transform_settings(context["params"]))

    config = transform_config()
    transform = transform_operator(config)
    report = commit()
    gather() >> config >> transform >> report
    TriggerDagRunOperator.partial(
        task_id="trigger_reembed",
        trigger_dag_id="reembed",
        logical_date=None,
        skip_when_already_exists=True,  # a retried task finds its run (the id names the conf)
        fail_when_dag_is_paused=True,  # a paused reembed would leave the run queued, unseen
    ).expand_kwargs(follow_up(report))  # type: ignore[arg-type]  # an XComArg: a list at run time


embed_images_dag = embed_images()
