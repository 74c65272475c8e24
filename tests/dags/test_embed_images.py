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
from pipeline.embedding import embed_requests
from pipeline.embedding.run import EmbeddingRun
from pipeline.ingest.ingestor import Ingestor
from pipeline.local.api_gateway import LocalApi
from pipeline.local.config import LOCAL_SAGEMAKER_ROLE
from pipeline.local.event_pump import EventPump
from pipeline.local.processes import free_port, start_group, stop_group, wait_until
from pipeline.storage.embed_queue import EmbedQueue
from pipeline.storage.embeddings_table import EmbeddingStore
from pipeline.storage.images_table import ImageStore
from pipeline.storage.manifests_table import ManifestStore
from pipeline.storage.shards import ShardStore
from tests.helpers import drain_messages, gradient_jpeg, image_bytes, queue_url

LOGICAL_DATE = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def dag(airflow_stack):
    from dags.embed_images import embed_images_dag

    for task in embed_images_dag.tasks:
        task.retries = 0  # a failure should fail the test run, not wait for a retry
    return embed_images_dag


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

    second = _run(dag, model_uri)
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
        wait_until(lambda: client.list_transform_jobs() is not None, 60, "the SageMaker emulator")

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


def test_a_run_failed_with_sagemaker_down_re_requests_its_images_then_they_are_embedded_once(
    dag, airflow_stack, own_emulator, monkeypatch
):
    settings, model_uri = airflow_stack
    for name in ("down1", "down2"):
        _upload(settings, f"uploads/{name}.jpg", gradient_jpeg((60 + len(name), 64)), "Heron")
    _ingest(settings)
    drain_messages(settings, settings.embed_queue)  # what the watcher's trigger consumes
    # SageMaker is down (the emulator is not running): the transform fails for good
    monkeypatch.setattr(embed_requests, "FIRST_RETRY_DELAY_SECONDS", 6)
    failed = _run(dag, model_uri)
    assert failed.state == "failed"
    states = {ti.task_id: ti.state for ti in failed.get_task_instances()}
    assert states["transform"] == "failed" and states["commit"] == "upstream_failed"
    images = ImageStore(settings)
    assert {images.get(i)["status"] for i in ("down1", "down2")} == {"pending"}

    # the run put its images back on the queue, delayed, as attempt 1
    assert _queue_counts(settings) == (0, 2)
    deadline, bodies = time.monotonic() + 30, []
    while len(bodies) < 2 and time.monotonic() < deadline:
        time.sleep(1)
        bodies += drain_messages(settings, settings.embed_queue)
    assert sorted(bodies, key=lambda b: b["image_id"]) == [
        {
            "image_id": i,
            "s3_key": f"uploads/{i}.jpg",
            "etag": images.get(i)["etag"],
            "attempt": 1,
        }
        for i in ("down1", "down2")
    ]
    assert all(images.get(i).get("embed_requested_at") for i in ("down1", "down2"))

    # the service comes back: the next run embeds each image once
    own_emulator.start()
    assert _run(dag, model_uri).state == "success"
    assert {images.get(i)["status"] for i in ("down1", "down2")} == {"embedded"}
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
    # and a successful run asks for nothing again
    assert _queue_counts(settings) == (0, 0)


def test_re_requests_double_their_delay_up_to_a_cap_and_stop_after_the_last_attempt(stack):
    settings = stack.settings
    for name in ("again", "last", "done"):
        _upload(settings, f"uploads/{name}.jpg", gradient_jpeg((50 + len(name), 50)), "Owl")
    _ingest(settings)
    drain_messages(settings, settings.embed_queue)
    ImageStore(settings).set_outcome(
        "done", ImageStore(settings).get("done")["etag"], {"status": "embedded"}
    )
    # a run that failed in gather (no plan): its requests' ids and attempts are all it has
    summary = EmbeddingRun(settings, "manual__failed").rerequest(
        EmbedQueue(settings),
        {"again": 2, "last": embed_requests.MAX_ATTEMPTS, "done": 0},
        "2026-11-01T12:00:00.000Z",
    )
    assert summary == {"rerequested": ["again"], "given_up": ["last"]}
    assert _queue_counts(settings) == (0, 1)
    assert [embed_requests.retry_delay(n) for n in range(1, 6)] == [30, 60, 120, 120, 120]
