"""Merge each prompt's small Parquet shards into one (same rows, fewer files), daily.

`find` lists the (prompt, model) pairs with shards to merge; one mapped `compact` per pair
writes the merged shard (rows of deleted images left out), swaps it into the manifest (a
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

from airflow.sdk import Param, dag, get_current_context, task

if TYPE_CHECKING:
    from pipeline.embedding.compaction import Compactor

AWS_CONN_ID = "aws_default"


def _compactor() -> Compactor:
    from pipeline.airflow_connection import settings_from_connection
    from pipeline.embedding.compaction import Compactor

    return Compactor(settings_from_connection(AWS_CONN_ID))


@dag(
    dag_id="compact_shards",
    schedule="@daily",
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
            description="shards with fewer rows than this are merged",
        ),
        "orphan_age_hours": Param(6, type="number", minimum=0),
    },
    default_args={"retries": 2, "retry_delay": timedelta(minutes=1)},
)
def compact_shards() -> None:
    @task
    def find() -> list[dict[str, str]]:
        return _compactor().candidates(get_current_context()["params"]["max_rows"])

    @task(max_active_tis_per_dagrun=4)
    def compact(target: dict[str, str]) -> dict[str, Any]:
        context = get_current_context()
        params, run_id = context["params"], context["run_id"]
        compactor = _compactor()
        result = compactor.compact(target["prompt"], target["model_id"], run_id, params["max_rows"])
        result["orphans_deleted"] = compactor.delete_orphans(
            target["prompt"], target["model_id"], timedelta(hours=params["orphan_age_hours"])
        )
        return result

    compact.partial().expand(target=find())


compact_shards_dag = compact_shards()
