"""Re-embed every embedded image (of some prompts, or all) with a new model artifact, beside the
old vectors, then switch each complete prompt's lookups to the new model.

plan    the artifact's model_id, the images still without its vector, cut into batches; each
        prompt's active-model pointer pinned to the model that answers it now;
batch   mapped once per batch: transform_config -> the provider's SageMakerTransformOperator
        (the same batch transform as embed_images, deferrable) -> commit (shards under the new
        `model=` prefix, manifests, vectors, record notes);
switch  per prompt, done/total; a complete prompt's pointer moves to the new model (a
        conditional write that also records `model_data_url`), an incomplete one stays (re-run
        this DAG: it plans only what is missing). The per-prompt report is the extra of an
        `imgsim_model_upgrade` asset event.

Triggered by hand for an upgrade, and by `embed_images` (`trigger_reembed`) when it embedded
new images of already-switched prompts with its own, older model: conf `model_data_url` (the
artifact on the prompts' pointers), `prompts` and the embed run's own transform params. Such a
run plans only those images and leaves the pointers, which already name the new model, as they
are; the images become candidates of their prompts' lookups when its commits end.

Progress in the Airflow UI: the mapped `batch` instances (done / total batches), each commit's
log line, and the switch's asset event. Logic lives in `pipeline/upgrade/`.

**When it fails**: the failed task's log says why (`plan`: the `model_data_url` param is missing
or unreadable; a `batch`'s transform: the SageMaker job's `FailureReason`; `commit`: S3 or
DynamoDB access). Lookups are unaffected: a prompt's pointer moves only once all its images
have the new vector. Fix the cause and trigger the DAG again with the same params: it plans
only the images still missing, so finished batches are not redone.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import Asset, Param, dag, get_current_context, task, task_group

from pipeline.embedding.transform_params import AWS_CONN_ID, transform_operator, transform_params

log = logging.getLogger(__name__)

MAX_PARALLEL_JOBS = 4  # transform jobs of one run at a time

model_upgrade = Asset(name="imgsim_model_upgrade")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _backfill(run_id: str) -> Any:
    from pipeline.airflow_connection import settings_from_connection
    from pipeline.upgrade.backfill import Backfill

    return Backfill(settings_from_connection(AWS_CONN_ID), run_id)


@dag(
    dag_id="reembed",
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    tags=["imgsim", "embedding", "upgrade"],
    doc_md=__doc__,
    params={
        "model_data_url": Param(
            "", type="string", description="s3:// URI of the new model.tar.gz (required)"
        ),
        "prompts": Param(
            [],
            type="array",
            items={"type": "string"},
            description="prompts to upgrade; empty: every embedded image, prompt or not",
        ),
        "batch_size": Param(500, type="integer", minimum=1, description="images per job"),
        **transform_params(),
    },
    default_args={"retries": 2, "retry_delay": timedelta(seconds=30)},
)
def reembed() -> None:
    @task
    def plan() -> list[int]:
        """The run's batch numbers, mapped over by `batch`."""
        context = get_current_context()
        params = context["params"]
        if not params["model_data_url"]:
            raise ValueError("set the model_data_url param: the new model.tar.gz")
        planned = _backfill(context["run_id"]).plan(
            params["model_data_url"], params["prompts"] or None, params["batch_size"], _now()
        )
        for prompt, counts in planned["prompts"].items():
            log.info("prompt %r: %s", prompt, counts)
        log.info(
            "%s images in %s batches to embed with %s",
            planned["images"],
            planned["batches"],
            planned["model_id"],
        )
        return list(range(planned["batches"]))

    @task
    def transform_config(batch: int) -> dict[str, Any]:
        from pipeline.embedding.transform_config import transform_config as build

        context = get_current_context()
        params = context["params"]
        if not params["role_arn"]:
            raise ValueError("set the role_arn param (or IMGSIM_SAGEMAKER_ROLE_ARN)")
        backfill = _backfill(context["run_id"])
        return build(
            backfill.batch_run(batch),
            backfill.read_plan()["model_data_url"],
            params["role_arn"],
            params["instance_type"],
            params["instance_count"],
            params["image_uri"],
            framework_version=params["framework_version"],
            environment=params["model_environment"],
        )

    @task
    def commit(batch: int) -> dict[str, Any]:
        return dict(_backfill(get_current_context()["run_id"]).commit(batch))

    @task_group(group_id="batch")
    def one_batch(batch: int) -> None:
        config = transform_config(batch)
        transform = transform_operator(config, max_active_tis_per_dagrun=MAX_PARALLEL_JOBS)
        config >> transform >> commit(batch)

    @task(trigger_rule="none_failed", outlets=[model_upgrade])
    def switch() -> dict[str, Any]:
        from pipeline.index_sync.sync import IndexSync
        from pipeline.upgrade.switch import switch_complete

        context = get_current_context()
        backfill = _backfill(context["run_id"])
        planned = backfill.read_plan()
        settings = backfill.settings
        index = IndexSync(settings).ensure_index if settings.vector_index_enabled else None
        report = switch_complete(backfill.images, backfill.active, planned, _now(), index)
        extra = {"model_id": planned["model_id"], "run_id": context["run_id"], "prompts": report}
        context["outlet_events"][model_upgrade].extra = extra
        return extra

    one_batch.expand(batch=plan()) >> switch()


reembed_dag = reembed()
