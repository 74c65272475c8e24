"""Keep each large prompt's vector index (PostgreSQL + pgvector, through the RDS Data API)
derived from its shards: triggered by every embedding commit, and runnable by hand.

`plan` lists the (prompt, model) pairs with something to do: `build` (the pair reached
`IMGSIM_VECTOR_INDEX_THRESHOLD` live rows and has no index, or `rebuild` is set for a named
prompt) or `sync` (shards committed since the last sync are pending, or images were deleted).
One mapped `sync` per pair does it and returns what it did (its XCom, and its log); then, on
a run over every prompt, `drop_orphans` drops the tables no manifest names (a retired model's,
a rebuild's old one left by a failure). Without a
cluster (`IMGSIM_VECTOR_DB_CLUSTER_ARN` unset) or with `IMGSIM_VECTOR_INDEX=off`, `plan` finds
nothing: every lookup is the exact scan.

Lookups never wait for this DAG: a prompt's pending shards are scanned exactly beside its
index, so an image is found from its commit on; the index only makes that scan small.

**When it fails**: the failed `sync`'s log names the prompt and the error (the Data API's, or
S3/DynamoDB access through `aws_default`). Nothing is switched before a build's index is
complete, and rows are upserted by image and object version: clear the task to retry. A table
that looks wrong is rebuilt from the shards with `prompt` and `rebuild: true`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset, Param, dag, get_current_context, task

if TYPE_CHECKING:
    from pipeline.index_sync.sync import IndexSync

AWS_CONN_ID = "aws_default"
embeddings_asset = Asset(name="imgsim_embeddings")  # the embed run's commit event


def _sync() -> IndexSync | None:
    from pipeline.airflow_connection import settings_from_connection
    from pipeline.index_sync.sync import IndexSync

    settings = settings_from_connection(AWS_CONN_ID)
    return IndexSync(settings) if settings.vector_index_enabled else None


@dag(
    dag_id="sync_vector_index",
    schedule=[embeddings_asset],
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    tags=["imgsim", "embedding"],
    doc_md=__doc__,
    params={
        "prompt": Param(None, type=["null", "string"], description="only this prompt"),
        "model_id": Param(None, type=["null", "string"], description="only this model"),
        "rebuild": Param(
            False, type="boolean", description="build the named prompt's index again, whole"
        ),
    },
    default_args={"retries": 2, "retry_delay": timedelta(minutes=1)},
)
def sync_vector_index() -> None:
    @task
    def plan() -> list[dict[str, str]]:
        syncer = _sync()
        if syncer is None:
            return []
        params = get_current_context()["params"]
        found = syncer.plan(params["prompt"], params["model_id"], bool(params["rebuild"]))
        return [t.as_dict() for t in found]

    @task(max_active_tis_per_dagrun=2)
    def sync(target: dict[str, str]) -> dict[str, Any]:
        from pipeline.index_sync.plan import Target

        syncer = _sync()
        if syncer is None:
            return {}
        return syncer.run(Target(**target)).as_dict()  # type: ignore[arg-type]

    @task(trigger_rule="all_done")
    def drop_orphans() -> list[str]:
        """Tables of retired models and stopped rebuilds, on runs over every prompt."""
        syncer = _sync()
        if syncer is None or get_current_context()["params"]["prompt"] is not None:
            return []
        return syncer.drop_orphans()

    sync.partial().expand(target=plan()) >> drop_orphans()


sync_vector_index_dag = sync_vector_index()
