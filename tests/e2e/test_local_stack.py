"""The whole local stack as `make demo` runs it: moto, the SageMaker emulator, the pump and
the API, and Airflow standalone whose embed_images DAG is triggered by the embed queue
(AssetWatcher on SQS). An upload must end embedded, with nothing polled by hand."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import boto3
import psutil
import pytest
import requests

from pipeline import aws
from pipeline.local.processes import free_port, is_alive
from pipeline.settings import Settings
from pipeline.storage.embed_queue import EmbedQueue
from pipeline.storage.manifests_table import ManifestStore
from tests.events import AWS_PUT, s3_put_record
from tests.helpers import gradient_jpeg, still_running
from tests.polling import eventually
from tests.process_guard import IMGSIM, exports, run_imgsim, services, watch_stack_dir
from tests.stack_env import vector_db_env


class Stack:
    """`imgsim` as a user runs it, for one stack directory and port set."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.status: dict[str, Any] = {"running": False}
        self.exports: dict[str, str] = {}

    def cli(self, *args: str, env: dict[str, str] | None = None, code: int = 0) -> str:
        """An interrupted `up` still stops what it started (tests/process_guard.py)."""
        result = run_imgsim(args, env or self.env, 300)
        assert result.returncode == code, result.stdout[-3000:] + result.stderr[-3000:]
        return result.stdout

    def ensure_up(self) -> None:
        """`up` unless every process the last status listed is still alive: only the first
        test waits for the stack, and a test that runs after the `down` test (in whatever
        order) gets a fresh one."""
        pids = [part["pid"] for part in self.status.values() if isinstance(part, dict)]
        if self.status["running"] and all(is_alive(pid) for pid in pids):
            return
        self.status = services(self.cli("--json", "up"))
        if not self.exports:
            self.exports = exports(self.cli("env"))


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    """One stack for the module. Its teardown stops it unless a test already did (`down` of a
    stopped stack says "nothing was running" and succeeds)."""
    env = {
        **os.environ,
        "IMGSIM_LOCAL_DIR": str(tmp_path_factory.mktemp("stack")),
        **{
            f"IMGSIM_LOCAL_{p}_PORT": str(free_port())
            for p in ("MOTO", "API", "SAGEMAKER", "BEDROCK", "AIRFLOW", "MWAA")
        },
        **vector_db_env(),
        # a prompt of 5 images gets a vector index here (test_a_prompt_over_the_threshold...)
        "IMGSIM_VECTOR_INDEX_THRESHOLD": "5",
    }
    env.pop("AIRFLOW_HOME", None)
    watch_stack_dir(env["IMGSIM_LOCAL_DIR"])
    stack = Stack(env)
    yield stack
    stack.cli("down")


@pytest.fixture
def local_stack(stack: Stack) -> tuple[dict[str, Any], dict[str, str]]:
    stack.ensure_up()
    return stack.status, stack.exports


def _await_embedded(api: str, image_id: str, timeout: float = 240) -> dict[str, Any]:
    def settled() -> dict[str, Any] | None:
        response = requests.get(f"{api}/images/{image_id}", timeout=10)
        record = response.json() if response.status_code == 200 else {}
        return record if record.get("status") in ("embedded", "failed") else None

    record = eventually(settled, timeout, 2, f"image {image_id} embedded or failed")
    assert record["status"] == "embedded", record
    return record


def _upload(exports: dict[str, str], key: str, prompt: str) -> None:
    s3 = boto3.client("s3", endpoint_url=exports["AWS_ENDPOINT_URL_S3"], region_name="us-east-1")
    s3.put_object(
        Bucket=exports["IMGSIM_BUCKET"],
        Key=key,
        Body=gradient_jpeg((160, 120)),
        Metadata={"prompt": prompt},
    )


def _asset_triggered(status: dict[str, Any]) -> set[str]:
    """The ids of embed_images runs the embed queue's asset events started."""
    runs_url = f"{status['airflow']['url']}/api/v2/dags/embed_images/dagRuns"
    runs = requests.get(runs_url, params={"limit": 100}, timeout=10).json()["dag_runs"]
    return {r["dag_run_id"] for r in runs if r["run_type"] == "asset_triggered"}


def _settled(status: dict[str, Any], settings: Settings, timeout: float = 180) -> None:
    """Wait until the embed queue is empty and no embed_images run is queued or running."""
    runs_url = f"{status['airflow']['url']}/api/v2/dags/embed_images/dagRuns"
    sqs = aws.client(settings, "sqs")
    url = sqs.get_queue_url(QueueName=settings.embed_queue)["QueueUrl"]
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    seen: dict[str, Any] = {}

    def idle() -> bool:
        seen["embed queue"] = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)[
            "Attributes"
        ]
        seen["active runs"] = requests.get(
            runs_url, params={"state": ["queued", "running"]}, timeout=10
        ).json()["dag_runs"]
        return not any(int(v) for v in seen["embed queue"].values()) and not seen["active runs"]

    eventually(idle, timeout, 2, lambda: f"the embed queue empty, no run active ({seen})")


def test_an_upload_is_embedded_by_the_event_driven_dag(local_stack):
    """Its embed request is also delivered twice more, as SQS may (at-least-once), through
    the real AssetWatcher: the runs those copies trigger embed nothing again."""
    status, exports = local_stack
    assert status["running"] and status["airflow"]["health"] == "healthy"
    settings = Settings.from_env(exports)
    _upload(exports, "uploads/e2e-owl.jpg", "an owl")
    head = aws.client(settings, "s3").head_object(Bucket=settings.bucket, Key="uploads/e2e-owl.jpg")
    queue, etag = EmbedQueue(settings), head["ETag"].strip('"')
    queue.request_embedding("e2e-owl", "uploads/e2e-owl.jpg", etag)  # while it is pending
    api = exports["IMGSIM_API_URL"]
    embedded = _await_embedded(api, "e2e-owl")
    _settled(status, settings)
    before = _asset_triggered(status)
    queue.request_embedding("e2e-owl", "uploads/e2e-owl.jpg", etag)  # once it is embedded
    eventually(lambda: _asset_triggered(status) - before, 120, 2, "a run of the re-sent request")
    _settled(status, settings)
    again = requests.get(f"{api}/images/e2e-owl", timeout=10).json()
    assert {k: v for k, v in again.items() if k != "url"} == {
        k: v for k, v in embedded.items() if k != "url"
    }
    assert ManifestStore(settings).get("an owl", "efficientnet-lite0-imagenet").rows == 1
    vector = requests.get(f"{api}/embeddings/e2e-owl", timeout=10).json()
    assert vector["model_id"] == "efficientnet-lite0-imagenet" and vector["dim"] == 1280

    # the run that embedded it was started by the queue (its state settles just after commit)
    runs_url = f"{status['airflow']['url']}/api/v2/dags/embed_images/dagRuns"

    def triggered() -> list[dict[str, Any]] | None:
        runs = requests.get(runs_url, timeout=10).json()["dag_runs"]
        found = [r for r in runs if r["run_type"] == "asset_triggered"]
        return found if any(r["state"] == "success" for r in found) else None

    runs = eventually(triggered, 60, 1, "a queue-triggered run succeeded")
    assert [r["state"] for r in runs if r["state"] != "running"][:1] == ["success"], runs


def test_generate_now_then_rank_it_against_an_upload(local_stack):
    """GET /images?prompt= paints with the Bedrock emulator; the image flows through ingest and
    the queue-triggered embedding; GET /similarity then ranks it for an upload this test made
    (a prompt of its own, so no other test's images take its places)."""
    _, exports = local_stack
    api = exports["IMGSIM_API_URL"]
    _upload(exports, "uploads/e2e-snowy-owl.jpg", "a snowy owl")
    generated = requests.get(f"{api}/images", params={"prompt": "A Snowy  Owl"}, timeout=60)
    assert generated.status_code == 200, generated.text
    image_id = generated.json()["image_id"]
    _await_embedded(api, "e2e-snowy-owl")
    _await_embedded(api, image_id)
    ranked = requests.get(
        f"{api}/similarity",
        timeout=30,
        params={"image_id": "e2e-snowy-owl", "prompt": "a snowy owl"},
    )
    assert ranked.status_code == 200, ranked.text
    assert [r["image_id"] for r in ranked.json()["results"]] == [image_id]


def test_a_prompt_over_the_threshold_is_answered_by_its_vector_index(local_stack):
    """Uploads through the bucket cross the threshold (5 in this module): the commit triggers
    sync_vector_index, which builds the prompt's pgvector index (the local PostgreSQL behind
    the Data API emulator); lookups then say `hnsw` and equal `exact=true`, a deletion
    included."""
    _, exports = local_stack
    api, prompt = exports["IMGSIM_API_URL"], "a shelf of shoes"
    settings = Settings.from_env(exports)
    sizes = [(160, 120), (200, 150), (120, 90), (240, 180), (180, 136), (100, 76)]
    names = [f"e2e-shoe-{n}" for n in range(len(sizes))]
    s3 = aws.client(settings, "s3")
    for name, size in zip(names, sizes, strict=True):
        s3.put_object(
            Bucket=settings.bucket,
            Key=f"uploads/{name}.jpg",
            Body=gradient_jpeg(size),
            Metadata={"prompt": prompt},
        )
    for name in names:
        _await_embedded(api, name)
    manifests = ManifestStore(settings)
    model = "efficientnet-lite0-imagenet"

    def indexed():
        manifest = manifests.get(prompt, model)
        return manifest if manifest and manifest.index_table and not manifest.pending else None

    eventually(indexed, 240, 2, "sync_vector_index built and synced the prompt's index")

    def both(query: str) -> tuple[dict[str, Any], dict[str, Any]]:
        pages = []
        for exact in ("false", "true"):
            params = {"image_id": query, "prompt": prompt, "k": 10, "exact": exact}
            response = requests.get(f"{api}/similarity", params=params, timeout=30)
            assert response.status_code == 200, response.text
            pages.append(response.json())
        return pages[0], pages[1]

    def ids(page: dict[str, Any]) -> list[str]:
        return [r["image_id"] for r in page["results"]]

    fast, exact = both(names[0])
    assert (fast["ranking"], exact["ranking"]) == ("hnsw", "exact")
    assert ids(fast) == ids(exact) and len(ids(fast)) == len(names) - 1
    assert requests.delete(f"{api}/images/{names[1]}", timeout=30).status_code == 200
    fast, exact = both(names[0])
    assert fast["ranking"] == "hnsw" and ids(fast) == ids(exact)
    assert names[1] not in ids(fast) and len(ids(fast)) == len(names) - 2


def test_the_demo_campaign_runs_in_airflow_and_its_images_embed(local_stack):
    from pipeline.local.demo import run_campaign
    from pipeline.settings import Settings

    status, exports = local_stack
    settings = Settings.from_env(exports)
    records = run_campaign(settings, status["airflow"]["url"], exports["IMGSIM_API_URL"])
    generated = [
        r
        for r in records
        if r.get("source") == "generated"
        and r.get("generation", {}).get("modifiers", {}).get("campaign") == "demo"
    ]
    assert len(generated) == 6  # campaigns/demo.yaml: 2 prompts x 3 images
    assert all(r["status"] == "embedded" for r in generated)


def test_campaign_run_reaches_airflow_through_mwaa_invoke_rest_api(local_stack, stack):
    """`imgsim campaign run` with an MWAA environment named: every Airflow call is an
    IAM-signed InvokeRestApi to the stack's MWAA emulator (the direct URL it is also given is
    closed), and Airflow's refusals come back through it as on AWS."""
    env = {
        **stack.env,
        "IMGSIM_MWAA_ENVIRONMENT": "imgsim-local",
        "IMGSIM_AIRFLOW_URL": "http://127.0.0.1:9",
    }

    def imgsim(*args: str, **extra: str) -> subprocess.CompletedProcess:
        command = [*IMGSIM, "--json", *args]
        return subprocess.run(
            command, env={**env, **extra}, capture_output=True, text=True, timeout=900
        )

    campaign = imgsim("campaign", "run", "demo", "--wait", "--timeout", "600")
    assert campaign.returncode == 0, campaign.stderr[-3000:]
    report = json.loads(campaign.stdout)
    assert report["state"] == "success"
    assert [p["prompt"] for p in report["prompts"]] == ["a cup of coffee", "a red fox"]
    assert report["summary"]["generated"] + report["summary"]["existing"] == 6

    missing = imgsim("campaign", "run", "no-such-campaign")
    assert missing.returncode == 1 and "Airflow has no DAG generate_no-such-campaign" in (
        missing.stderr
    )
    elsewhere = imgsim("campaign", "run", "demo", IMGSIM_MWAA_ENVIRONMENT="other-env")
    assert elsewhere.returncode == 1 and "ResourceNotFoundException" in elsewhere.stderr


def test_a_deleted_image_leaves_every_route_after_a_bucket_deletion_and_a_replayed_event(
    local_stack,
):
    """Three uploads of one prompt, embedded by the DAG; b deleted with DeleteObject; b's
    original creation event delivered again (S3's shape, with a sequencer); then
    DELETE /images/c: from its answer on, a's lookups, POST /similarity and GET /prompts'
    count leave b and c out, and GET /images says they are deleted."""
    _, exports = local_stack
    settings = Settings.from_env(exports)
    api, prompt = exports["IMGSIM_API_URL"], "three deleted kites"
    s3 = aws.client(settings, "s3")
    etags = {}
    for n, name in enumerate("abc"):
        key = f"uploads/e2e-kite-{name}.jpg"
        body = gradient_jpeg((150 + 7 * n, 110))
        put = s3.put_object(Bucket=settings.bucket, Key=key, Body=body, Metadata={"prompt": prompt})
        etags[name] = (put["ETag"].strip('"'), len(body))
    for name in "abc":
        _await_embedded(api, f"e2e-kite-{name}")

    def listed() -> dict[str, Any]:
        got = requests.get(
            f"{api}/similarity", params={"image_id": "e2e-kite-a", "prompt": prompt}, timeout=10
        )
        posted = requests.post(
            f"{api}/similarity", json={"prompt": prompt, "image_ids": ["e2e-kite-a"]}, timeout=10
        )
        counts = requests.get(f"{api}/prompts", timeout=10).json()["prompts"]
        return {
            "get": sorted(r["image_id"].removeprefix("e2e-kite-") for r in got.json()["results"]),
            "post": sorted(
                r["image_id"].removeprefix("e2e-kite-")
                for r in posted.json()["queries"][0]["results"]
            ),
            "count": [p["images"] for p in counts if p["prompt"] == prompt],
        }

    assert listed() == {"get": ["b", "c"], "post": ["b", "c"], "count": [3]}
    s3.delete_object(Bucket=settings.bucket, Key="uploads/e2e-kite-b.jpg")
    eventually(lambda: listed()["get"] == ["c"], 30, 0.5, "b out of the GET listing")
    assert listed() == {"get": ["c"], "post": ["c"], "count": [2]}

    sqs = aws.client(settings, "sqs")
    queue = sqs.get_queue_url(QueueName=settings.ingest_queue)["QueueUrl"]
    etag, size = etags["b"]
    replay = s3_put_record(settings.bucket, "uploads/e2e-kite-b.jpg", etag, size, AWS_PUT)
    sqs.send_message(QueueUrl=queue, MessageBody=replay["body"])
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    eventually(
        lambda: (
            not any(
                int(v)
                for v in sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=names)[
                    "Attributes"
                ].values()
            )
        ),
        30,
        0.5,
        "the pump handled the replayed event",
    )
    assert requests.get(f"{api}/images/e2e-kite-b", timeout=10).status_code == 410

    deleted = requests.delete(f"{api}/images/e2e-kite-c", timeout=30)
    assert deleted.json() == {"image_id": "e2e-kite-c", "status": "deleted"}
    for _ in range(5):  # and it stays out while the removal event and any run go by
        assert listed() == {"get": [], "post": [], "count": [1]}
        assert requests.get(f"{api}/images/e2e-kite-c", timeout=10).status_code == 410
        time.sleep(1)


def test_down_stops_every_process_it_started(local_stack, stack, tmp_path):
    """The real `down`, as a user runs it: every process group the state file recorded and
    every descendant (Airflow's scheduler, triggerer, task runners, ...) is gone after it.
    Other tests still pass after this one: their fixture brings the stack up again."""
    status, _ = local_stack
    parts = ("moto", "api", "sagemaker", "bedrock", "airflow", "mwaa", "postgres", "rds-data")
    pids = [status[part]["pid"] for part in parts]
    family = []
    for pid in pids:
        parent = psutil.Process(pid)
        family += [parent, *parent.children(recursive=True)]
    assert len(family) > len(pids)  # Airflow runs a scheduler, triggerer, workers, ...

    # `down` of another (empty) stack directory touches nothing of ours: the recorded
    # processes and Airflow's long-lived ones (task runners, and the file parsers the
    # dag-processor and triggerer fork with their own command line, come and go on their own)
    long_lived = [p for p in family if p.pid in pids or _main_airflow_part(p)]
    assert {_airflow_part(p) for p in long_lived} >= {"scheduler", "triggerer", "dag-processor"}
    stack.cli("down", env={**os.environ, "IMGSIM_LOCAL_DIR": str(tmp_path)})
    assert all(still_running(p) for p in long_lived)

    assert stack.cli("down").strip() == "stopped"
    _, alive = psutil.wait_procs(family, timeout=10)
    running = [p for p in alive if still_running(p)]
    assert running == [], [(p.pid, p.cmdline()) for p in running]
    assert services(stack.cli("--json", "status", code=3)) == {"running": False}


def _airflow_part(process: psutil.Process) -> str | None:
    """ "scheduler", "triggerer", ... for Airflow's own long-lived processes, else None."""
    try:
        words = " ".join(process.cmdline()).split()
    except psutil.Error:
        return None
    for part in ("scheduler", "triggerer", "dag-processor", "api_server"):
        if any(w.endswith("airflow") for w in words) and part in words:
            return part
    return None


def _main_airflow_part(process: psutil.Process) -> bool:
    """One of Airflow's parts, not a process it forked with the same command line."""
    part = _airflow_part(process)
    try:
        parent = process.parent()
    except psutil.Error:
        return False
    return part is not None and (parent is None or _airflow_part(parent) != part)
