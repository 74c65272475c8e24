"""Merge each prompt's small Parquet shards (same rows, fewer files) and drop deleted images'
rows, daily; and after each embedding commit for the manifests that cannot wait.

`find` lists the (prompt, model) pairs with shards to merge or deleted rows to drop; a run
that an embedding commit triggered (the `imgsim_embeddings` asset) lists only the manifests
due at once: an item grown past a share of DynamoDB's 400 KB limit, or deletions past the
item's room for tombstones (docs/design.md, Storage). One mapped `compact` per pair writes
merged shards of at most `max_rows` rows each (what the task holds in memory) and rewrites
the shards that hold a deleted image's row without it, swaps them into the manifest (a
version-checked write: a concurrent embed run is never lost) and deletes shard files no
manifest has listed for `orphan_age_hours`. Each `compact` returns what it merged and deleted
(its XCom, and its log).

**When it fails**: the failed `compact`'s log names the prompt and the error (S3 or DynamoDB
access through the `aws_default` connection, usually). Until the swap the old shards stay
listed, so lookups never miss a row; a merged shard written before a failed swap is an orphan
that a later run deletes. Fix the cause and clear the task: a rerun merges the same rows.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import (
    Asset,
    AssetOrTimeSchedule,
    CronTriggerTimetable,
    Param,
    dag,
    get_current_context,
    task,
)

if TYPE_CHECKING:
    from pipeline.embedding.compaction import Compactor

AWS_CONN_ID = "aws_default"
embeddings_asset = Asset(name="imgsim_embeddings")  # the embed run's commit event


def _compactor() -> Compactor:
    from pipeline.airflow_connection import settings_from_connection
    from pipeline.embedding.compaction import Compactor

    return Compactor(settings_from_connection(AWS_CONN_ID))


@dag(
    dag_id="compact_shards",
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("@daily", timezone="UTC"), assets=[embeddings_asset]
    ),
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    tags=["imgsim", "embedding"],
    doc_md=__doc__,
    params={
        "max_rows": Param(
            100_000,
            type="integer",
            minimum=1,
            description="shards with fewer rows than this are merged; no new shard is larger",
        ),
        "orphan_age_hours": Param(6, type="number", minimum=0),
    },
    default_args={"retries": 2, "retry_delay": timedelta(minutes=1)},
)
def compact_shards() -> None:
    @task
    def find() -> list[dict[str, str]]:
        context = get_current_context()
        due_only = context["dag_run"].run_type == "asset_triggered"
        return _compactor().candidates(context["params"]["max_rows"], due_only=due_only)

    @task(max_active_tis_per_dagrun=4)
    def compact(target: dict[str, str]) -> dict[str, Any]:
        context = get_current_context()
        params, run_id = context["params"], context["run_id"]
        compactor = _compactor()
        results = compactor.compact_all(
            target["prompt"], target["model_id"], run_id, params["max_rows"]
        )
        result = {**results[0], "passes": results}
        result["orphans_deleted"] = compactor.delete_orphans(
            target["prompt"], target["model_id"], timedelta(hours=params["orphan_age_hours"])
        )
        return result

    compact.partial().expand(target=find())


compact_shards_dag = compact_shards()
