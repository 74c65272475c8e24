"""dags/embed_images.py run with dag.test() on the local stack: moto for S3/DynamoDB/SQS, the
SageMaker emulator for the provider's SageMakerTransformOperator, the real inference code."""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import boto3
import numpy as np
import pytest
import requests

from lambdas.api.handler import make_handler as make_api_handler
from lambdas.ingest.handler import make_handler
from pipeline import aws
from pipeline.embedding import attempts
from pipeline.embedding.run import EmbeddingRun
from pipeline.ingest.ingestor import Ingestor
from pipeline.local.api_gateway import LocalApi
from pipeline.local.config import LOCAL_SAGEMAKER_ROLE
from pipeline.local.event_pump import EventPump
from pipeline.local.processes import free_port, start_group, stop_group
from pipeline.storage.embed_queue import EmbedQueue
from pipeline.storage.embeddings_table import EmbeddingStore
from pipeline.storage.images_table import ImageStore
from pipeline.storage.manifests_table import ManifestStore
from pipeline.storage.shards import ShardStore
from tests.helpers import (
    drain_messages,
    fresh_dag,
    gradient_jpeg,
    image_bytes,
    queue_url,
    sagemaker_emulator_answers,
)

LOGICAL_DATE = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def dag(airflow_stack):
    from dags.embed_images import embed_images_dag

    dag = fresh_dag(embed_images_dag)
    for task in dag.tasks:
        task.retries = 0  # a failure should fail the test run, not wait for a retry
    return dag


def _upload(settings, key, data, prompt=None):
    metadata = {"prompt": prompt} if prompt else {}
    aws.client(settings, "s3").put_object(
        Bucket=settings.bucket, Key=key, Body=data, Metadata=metadata
    )


def _ingest(settings):
    EventPump(settings, make_handler(Ingestor.from_settings(settings))).drain()


def _state(settings) -> dict:
    """Everything an embedding run writes, as plain data (shard contents included)."""
    ddb = aws.client(settings, "dynamodb")
    tables = {}
    for table in (settings.images_table, settings.embeddings_table, settings.shard_manifests_table):
        tables[table] = sorted(
            json.dumps(i, sort_keys=True, default=str) for i in ddb.scan(TableName=table)["Items"]
        )
    s3 = aws.client(settings, "s3")
    listing = s3.list_objects_v2(Bucket=settings.bucket, Prefix="embeddings/").get("Contents", [])
    shards = {o["Key"]: ShardStore(settings).read(o["Key"]).to_pylist() for o in listing}
    return {"tables": tables, "shards": shards}


def _run(dag, model_uri, **conf):
    """A manual run with the default `grace_minutes`: it still embeds the images recorded a
    moment ago (only the scheduled safety net leaves the newest ones to their own runs)."""
    return dag.test(
        logical_date=LOGICAL_DATE,
        run_conf={"model_data_url": model_uri, "role_arn": LOCAL_SAGEMAKER_ROLE, **conf},
    )


def test_recorded_images_end_as_shards_and_records(dag, airflow_stack, caplog):
    settings, model_uri = airflow_stack
    _upload(settings, "uploads/fox1.jpg", gradient_jpeg((120, 90)), "Red Fox")
    _upload(settings, "uploads/fox2.png", image_bytes("PNG", (50, 70)), "red  fox")
    _upload(settings, "uploads/cup.jpg", gradient_jpeg((60, 60)), "a cup")
    _upload(settings, "uploads/loose.jpg", gradient_jpeg((40, 40)))  # no prompt
    _upload(settings, "uploads/spoiled.jpg", gradient_jpeg((80, 80)), "a cup")
    _ingest(settings)
    # the object is replaced by junk after validation, without a new ingest: the job's
    # handler meets a bad image, which must fail alone
    aws.client(settings, "s3").put_object(
        Bucket=settings.bucket, Key="uploads/spoiled.jpg", Body=b"junk"
    )
    aws.client(settings, "dynamodb").update_item(
        TableName=settings.images_table,
        Key={"image_id": {"S": "spoiled"}},
        UpdateExpression="SET etag = :e",
        ExpressionAttributeValues={
            ":e": {
                "S": aws.client(settings, "s3")
                .head_object(Bucket=settings.bucket, Key="uploads/spoiled.jpg")["ETag"]
                .strip('"')
            }
        },
    )

    caplog.set_level("INFO", logger="airflow.sdk.definitions.dag")
    run = _run(dag, model_uri)
    assert run.state == "success"
    # the transform waited in the trigger (dag.test() runs it in line), not in the worker
    assert dag.get_task("transform").deferrable
    assert any("running trigger in line" in r.getMessage() for r in caplog.records)

    images = ImageStore(settings)
    statuses = {i: images.get(i)["status"] for i in ("fox1", "fox2", "cup", "loose", "spoiled")}
    assert statuses == {
        "fox1": "embedded",
        "fox2": "embedded",
        "cup": "embedded",
        "loose": "embedded",
        "spoiled": "failed",
    }
    assert images.get("spoiled")["error"].startswith("embedding_failed:")
    assert images.get("fox1")["embedding_model_id"] == "clip-tiny-random-init-seed0"

    embeddings = EmbeddingStore(settings)
    fox1 = embeddings.get("fox1")
    assert fox1["dim"] == 32 and fox1["model_id"] == "clip-tiny-random-init-seed0"
    assert abs(np.linalg.norm(fox1["embedding"]) - 1) < 1e-5
    assert embeddings.get("loose") and "shard_key" not in embeddings.get("loose")

    manifest = ManifestStore(settings).get("red fox", "clip-tiny-random-init-seed0")
    assert manifest.rows == 2 and len(manifest.shards) == 1 and manifest.version == 1
    table = ShardStore(settings).read(manifest.shards[0])
    assert table.column("image_id").to_pylist() == ["fox1", "fox2"]
    assert table.schema.metadata[b"model_id"] == b"clip-tiny-random-init-seed0"
    assert table.schema.metadata[b"prompt"] == b"red fox"
    np.testing.assert_allclose(
        np.asarray(table.column("embedding").to_pylist()[0]), fox1["embedding"], atol=1e-6
    )
    assert ManifestStore(settings).get("a cup", "clip-tiny-random-init-seed0").rows == 1

    # the API serves the vector the run committed
    api = LocalApi(make_api_handler(Ingestor.from_settings(settings))).start()
    try:
        body = requests.get(f"{api.url}/embeddings/fox1", timeout=10).json()
    finally:
        api.stop()
    np.testing.assert_allclose(body["embedding"], fox1["embedding"], atol=1e-7)

    # another run of the DAG (nothing pending any more) changes nothing
    before = _state(settings)
    assert _run(dag, model_uri).state == "success"
    assert _state(settings) == before
    # and so does a retried commit of the first run
    EmbeddingRun(settings, run.run_id).commit()
    assert _state(settings) == before


def test_a_failure_between_transform_and_commit_then_a_rerun_ends_in_the_same_state(
    dag, airflow_stack, monkeypatch
):
    settings, model_uri = airflow_stack
    for name in ("a", "b", "c"):
        _upload(settings, f"uploads/{name}.jpg", gradient_jpeg((64 + ord(name), 64)), "Fork")
    _ingest(settings)
    # the commit fails after the shard is written: the manifests table is unreachable
    monkeypatch.setenv("IMGSIM_SHARD_MANIFESTS_TABLE", "no-such-table")
    first = _run(dag, model_uri)
    assert first.state == "failed"
    assert {ImageStore(settings).get(i)["status"] for i in "abc"} == {"pending"}
    monkeypatch.setenv("IMGSIM_SHARD_MANIFESTS_TABLE", settings.shard_manifests_table)

    second = _run(dag, model_uri, retry_after_minutes=0)  # at once, not after the retry delay
    assert second.state == "success"
    assert {ImageStore(settings).get(i)["status"] for i in "abc"} == {"embedded"}
    manifest = ManifestStore(settings).get("fork", "clip-tiny-random-init-seed0")
    assert manifest.rows == 3 and len(manifest.shards) == 1
    ids = ShardStore(settings).read(manifest.shards[0]).column("image_id").to_pylist()
    assert ids == ["a", "b", "c"]


def test_a_run_without_an_execution_role_fails_before_any_job_naming_the_param(
    dag, airflow_stack, capfd
):
    settings, model_uri = airflow_stack
    _upload(settings, "uploads/norole.jpg", gradient_jpeg(), "Fork")
    _ingest(settings)
    run = _run(dag, model_uri, role_arn="")
    assert run.state == "failed"
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states["transform_config"] == "failed" and states["transform"] != "success"
    out, err = capfd.readouterr()
    assert "set the role_arn param (or IMGSIM_SAGEMAKER_ROLE_ARN)" in out + err
    assert ImageStore(settings).get("norole")["status"] == "pending"


def test_compact_shards_dag_merges_what_two_runs_wrote(dag, airflow_stack):
    from dags.compact_shards import compact_shards_dag

    settings, model_uri = airflow_stack
    _upload(settings, "uploads/p1.jpg", gradient_jpeg((70, 70)), "Owl")
    _ingest(settings)
    assert _run(dag, model_uri).state == "success"
    _upload(settings, "uploads/p2.jpg", gradient_jpeg((90, 70)), "owl")
    _ingest(settings)
    assert _run(dag, model_uri).state == "success"
    model_id = "clip-tiny-random-init-seed0"
    assert len(ManifestStore(settings).get("owl", model_id).shards) == 2

    assert compact_shards_dag.test(run_conf={"orphan_age_hours": 0}).state == "success"
    manifest = ManifestStore(settings).get("owl", model_id)
    assert len(manifest.shards) == 1 and manifest.rows == 2
    assert ShardStore(settings).read(manifest.shards[0]).column("image_id").to_pylist() == [
        "p1",
        "p2",
    ]


def test_an_unset_embed_queue_url_is_this_dag_s_import_error_naming_the_variable(monkeypatch):
    """What the Airflow UI shows for the file: no DAG watching a made-up queue."""
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.delenv("IMGSIM_EMBED_QUEUE_URL", raising=False)
    path = Path(__file__).resolve().parents[2] / "dags" / "embed_images.py"
    bag = DagBag(dag_folder=path)
    assert "embed_images" not in bag.dags
    (error,) = bag.import_errors.values()
    assert "IMGSIM_EMBED_QUEUE_URL is not set" in error

    monkeypatch.setenv("IMGSIM_EMBED_QUEUE_URL", "https://sqs.eu-west-1.amazonaws.com/1/q")
    bag = DagBag(dag_folder=path)
    assert not bag.import_errors and "embed_images" in bag.dags


class _Emulator:
    """A SageMaker emulator of this test's own, on a free port, that it stops and restarts."""

    def __init__(self, moto_url: str, work: Path) -> None:
        self.port, self.work, self.moto_url = free_port(), work, moto_url
        self.url = f"http://127.0.0.1:{self.port}"
        self.pid: int | None = None

    def start(self) -> None:
        self.pid = start_group(
            [
                sys.executable,
                *("-m", "pipeline.local.sagemaker", "--port", str(self.port)),
                *("--work-dir", str(self.work / "work")),
            ],
            self.work / f"emulator-{time.monotonic_ns()}.log",
            env={**os.environ, "AWS_ENDPOINT_URL_S3": self.moto_url},
        ).pid
        client = boto3.client("sagemaker", endpoint_url=self.url, region_name="us-east-1")
        sagemaker_emulator_answers(client)

    def stop(self) -> None:
        if self.pid is not None:
            stop_group(self.pid)
            self.pid = None


@pytest.fixture
def own_emulator(airflow_stack, moto_server, tmp_path, monkeypatch):
    """The AWS connection's SageMaker endpoints on an emulator the test controls (stopped)."""
    emulator = _Emulator(moto_server.url, tmp_path)
    conn = json.loads(os.environ["AIRFLOW_CONN_AWS_DEFAULT"])
    for service in ("sagemaker", "sagemaker-runtime"):
        conn["extra"]["service_config"][service] = {"endpoint_url": emulator.url}
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(conn))
    yield emulator
    emulator.stop()


def _queue_counts(settings) -> tuple[int, int]:
    attributes = aws.client(settings, "sqs").get_queue_attributes(
        QueueUrl=queue_url(settings, settings.embed_queue),
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesDelayed"],
    )["Attributes"]
    return (
        int(attributes["ApproximateNumberOfMessages"]),
        int(attributes["ApproximateNumberOfMessagesDelayed"]),
    )


def test_a_run_failed_with_sagemaker_down_leaves_its_images_to_a_later_run_that_embeds_them_once(
    dag, airflow_stack, own_emulator
):
    settings, model_uri = airflow_stack
    for name in ("down1", "down2"):
        _upload(settings, f"uploads/{name}.jpg", gradient_jpeg((60 + len(name), 64)), "Heron")
    _ingest(settings)
    drain_messages(settings, settings.embed_queue)  # what the watcher's trigger consumes
    # SageMaker is down (the emulator is not running): the transform fails for good
    failed = _run(dag, model_uri)
    assert failed.state == "failed"
    states = {ti.task_id: ti.state for ti in failed.get_task_instances()}
    assert states["transform"] == "failed" and states["commit"] == "upstream_failed"
    images = ImageStore(settings)
    for image_id in ("down1", "down2"):
        record = images.get(image_id)
        assert (record["status"], record["embed_attempts"]) == ("pending", 1)
        assert record["embed_attempt_run"] == failed.run_id and "error" not in record
    # the one retry path is a later run: nothing is put back on the queue
    assert _queue_counts(settings) == (0, 0)

    # a run within `retry_after_minutes` of the attempt leaves them alone
    waiting = _run(dag, model_uri)
    assert {ti.task_id: ti.state for ti in waiting.get_task_instances()}["gather"] == "skipped"
    assert {images.get(i)["embed_attempts"] for i in ("down1", "down2")} == {1}

    # the service comes back: the next run embeds each image once
    own_emulator.start()
    assert _run(dag, model_uri, retry_after_minutes=0).state == "success"
    assert {images.get(i)["status"] for i in ("down1", "down2")} == {"embedded"}
    assert {images.get(i)["embed_attempts"] for i in ("down1", "down2")} == {2}
    manifest = ManifestStore(settings).get("heron", "clip-tiny-random-init-seed0")
    assert manifest.rows == 2 and len(manifest.shards) == 1
    rows = [
        image_id
        for key in manifest.shards
        for image_id in ShardStore(settings).read(key).column("image_id").to_pylist()
    ]
    assert rows == ["down1", "down2"]
    embedding_items = aws.client(settings, "dynamodb").scan(TableName=settings.embeddings_table)
    assert sorted(i["embedding_id"]["S"] for i in embedding_items["Items"]) == ["down1", "down2"]
    assert _queue_counts(settings) == (0, 0)


def test_an_image_whose_runs_keep_failing_fails_once_after_four_attempts_then_redrive_reopens_it(
    dag, airflow_stack
):
    """The bound: 4 runs plan it, the 4th one's failure callback fails it with the task and its
    error as the reason; no later run plans it; redrive_dlq (queue embed) sends it back."""
    from dags.redrive_dlq import redrive_dlq_dag

    settings, model_uri = airflow_stack
    _upload(settings, "uploads/stubborn.jpg", gradient_jpeg((66, 55)), "Crane")
    _ingest(settings)
    drain_messages(settings, settings.embed_queue)
    images = ImageStore(settings)
    for attempt in range(1, attempts.MAX_ATTEMPTS + 1):
        run = _run(dag, model_uri, role_arn="", retry_after_minutes=0)  # transform_config fails
        assert run.state == "failed"
        record = images.get("stubborn")
        assert record["embed_attempts"] == attempt
        if attempt < attempts.MAX_ATTEMPTS:
            assert record["status"] == "pending" and "error" not in record
    assert record["status"] == "failed"
    assert record["error"].startswith(
        f"embedding_gave_up: 4 runs did not embed it; the last was {run.run_id}: "
        "transform_config: set the role_arn param"
    )

    # no fifth attempt, whatever runs: the record stays as the last failure left it
    fifth = _run(dag, model_uri, retry_after_minutes=0)
    assert {ti.task_id: ti.state for ti in fifth.get_task_instances()}["gather"] == "skipped"
    assert images.get("stubborn") == record
    assert _queue_counts(settings) == (0, 0)

    # the cause is fixed: redrive sends it back, and the next run embeds it once
    redriven = redrive_dlq_dag.test(run_conf={"queue": "embed"})
    assert redriven.state == "success"
    reopened = images.get("stubborn")
    assert reopened["status"] == "pending"
    assert not {"error", "embed_attempts", "embed_attempt_run"} & set(reopened)
    assert [b["image_id"] for b in drain_messages(settings, settings.embed_queue)] == ["stubborn"]
    assert _run(dag, model_uri).state == "success"
    assert images.get("stubborn")["status"] == "embedded"
    assert ManifestStore(settings).get("crane", "clip-tiny-random-init-seed0").rows == 1


def test_the_bound_holds_without_failure_callbacks_a_retried_gather_counts_once(stack):
    """Runs that died without their callback: the next gather fails the image that had its
    attempts, and never plans it again. A retried gather (the same run) counts nothing more;
    an attempt that began within the retry delay waits."""
    settings = stack.settings
    for name in ("crashy", "recent"):
        _upload(settings, f"uploads/{name}.jpg", gradient_jpeg((50 + len(name), 50)), "Owl")
    _ingest(settings)
    drain_messages(settings, settings.embed_queue)
    images = ImageStore(settings)

    def gather(run_id: str, minute: int, retry_before: str | None = None) -> dict:
        at = f"2026-11-01T12:{minute:02d}:00.000Z"
        return EmbeddingRun(settings, run_id).gather(
            ["crashy"], pending_before="", run_at=at, retry_before=retry_before
        )

    assert gather("run-1", 0)["count"] == 1
    assert gather("run-1", 0)["count"] == 1  # its task retried
    assert images.get("crashy")["embed_attempts"] == 1
    for n in range(2, attempts.MAX_ATTEMPTS + 1):
        assert gather(f"run-{n}", n)["count"] == 1
    assert images.get("crashy")["embed_attempts"] == attempts.MAX_ATTEMPTS
    summary = gather("run-5", 5)
    assert (summary["count"], summary["gave_up"]) == (0, ["crashy"])
    record = images.get("crashy")
    assert record["status"] == "failed"
    assert record["error"] == "embedding_gave_up: 4 runs did not embed it; the last was run-4"
    assert gather("run-6", 6)["count"] == 0 and images.get("crashy") == record

    # the retry delay: an attempt at 12:10 waits for a run whose delay reaches back past it
    run = EmbeddingRun(settings, "run-a")
    assert run.gather(["recent"], "", "2026-11-01T12:10:00.000Z")["count"] == 1
    later = EmbeddingRun(settings, "run-b")
    waiting = later.gather(
        ["recent"], "", "2026-11-01T12:15:00.000Z", retry_before="2026-11-01T12:05:00.000Z"
    )
    assert (waiting["count"], waiting["waiting"]) == (0, ["recent"])
    due = later.gather(
        ["recent"], "", "2026-11-01T12:21:00.000Z", retry_before="2026-11-01T12:11:00.000Z"
    )
    assert due["count"] == 1 and images.get("recent")["embed_attempts"] == 2


def test_the_watcher_s_trigger_deletes_what_it_receives_so_the_queue_cannot_count_failures(
    airflow_stack,
):
    """The premise of the embed queue having no DLQ, on the installed amazon provider: one
    event, and the message is gone from the queue (neither visible nor in flight)."""
    import asyncio

    from airflow.providers.common.messaging.triggers.msg_queue import MessageQueueTrigger

    from dags.embed_images import embed_requests

    settings, _ = airflow_stack
    watched = embed_requests.watchers[0].trigger
    assert watched.serialize()[1]["delete_message_on_reception"] is True
    # the DAG's trigger as configured, on this test's queue (the module was parsed once)
    url = queue_url(settings, settings.embed_queue)
    trigger = MessageQueueTrigger(scheme=watched.scheme, **{**watched.kwargs, "sqs_queue": url})
    EmbedQueue(settings).request_embedding("doorbell", "uploads/doorbell.jpg", "etag")

    async def first_event():
        async for event in trigger.run():
            return event

    event = asyncio.run(asyncio.wait_for(first_event(), timeout=60))
    bodies = [json.loads(m["Body"]) for m in event.payload["message_batch"]]
    assert [b["image_id"] for b in bodies] == ["doorbell"]
    attributes = aws.client(settings, "sqs").get_queue_attributes(
        QueueUrl=queue_url(settings, settings.embed_queue),
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    assert attributes == {
        "ApproximateNumberOfMessages": "0",
        "ApproximateNumberOfMessagesNotVisible": "0",
    }
