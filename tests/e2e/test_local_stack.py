"""The whole local stack as `make demo` runs it: moto, the SageMaker emulator, the pump and
the API, and Airflow standalone whose embed_images DAG is triggered by the embed queue
(AssetWatcher on SQS). An upload must end embedded, with nothing polled by hand."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import boto3
import psutil
import pytest
import requests

from pipeline.local.processes import free_port
from tests.helpers import gradient_jpeg


@pytest.fixture(scope="module")
def local_stack(tmp_path_factory):
    env = {
        **os.environ,
        "IMGSIM_LOCAL_DIR": str(tmp_path_factory.mktemp("stack")),
        **{
            f"IMGSIM_LOCAL_{p}_PORT": str(free_port())
            for p in ("MOTO", "API", "SAGEMAKER", "BEDROCK", "AIRFLOW")
        },
    }
    env.pop("AIRFLOW_HOME", None)

    def cli(*args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "pipeline.local", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        return result.stdout

    cli("up")
    status = json.loads(cli("status"))
    exports = dict(line.removeprefix("export ").split("=", 1) for line in cli("env").splitlines())
    yield status, exports
    cli("down")


def test_an_upload_is_embedded_by_the_event_driven_dag(local_stack):
    status, exports = local_stack
    assert status["running"] and status["airflow"]["alive"]
    s3 = boto3.client("s3", endpoint_url=exports["AWS_ENDPOINT_URL_S3"], region_name="us-east-1")
    s3.put_object(
        Bucket=exports["IMGSIM_BUCKET"],
        Key="uploads/e2e-owl.jpg",
        Body=gradient_jpeg((160, 120)),
        Metadata={"prompt": "an owl"},
    )
    api = exports["IMGSIM_API_URL"]
    started = time.monotonic()
    record: dict = {}
    while time.monotonic() - started < 240:
        response = requests.get(f"{api}/images/e2e-owl", timeout=10)
        record = response.json() if response.status_code == 200 else {}
        if record.get("status") in ("embedded", "failed"):
            break
        time.sleep(2)
    assert record.get("status") == "embedded", record
    vector = requests.get(f"{api}/embeddings/e2e-owl", timeout=10).json()
    assert vector["model_id"] == "color-layout-v1" and vector["dim"] == 120

    # the run that embedded it was started by the queue (its state settles just after commit)
    runs_url = f"{status['airflow']['url']}/api/v2/dags/embed_images/dagRuns"
    deadline = time.monotonic() + 60
    while True:
        runs = requests.get(runs_url, timeout=10).json()["dag_runs"]
        triggered = [r for r in runs if r["run_type"] == "asset_triggered"]
        if any(r["state"] == "success" for r in triggered) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert [r["state"] for r in triggered if r["state"] != "running"][:1] == ["success"], runs


def test_generate_now_then_rank_it_against_an_upload(local_stack):
    """GET /images?prompt= paints with the Bedrock emulator; the image flows through ingest and
    the queue-triggered embedding; GET /similarity then ranks it for the upload."""
    _, exports = local_stack
    api = exports["IMGSIM_API_URL"]
    generated = requests.get(f"{api}/images", params={"prompt": "An owl"}, timeout=60)
    assert generated.status_code == 200, generated.text
    image_id = generated.json()["image_id"]
    deadline = time.monotonic() + 240
    while requests.get(f"{api}/images/{image_id}", timeout=10).json()["status"] == "pending":
        assert time.monotonic() < deadline, "the generated image was never embedded"
        time.sleep(2)
    ranked = requests.get(
        f"{api}/similarity", timeout=30, params={"image_id": "e2e-owl", "prompt": "an owl"}
    ).json()
    assert image_id in [r["image_id"] for r in ranked["results"]]


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


def test_down_stops_every_process_it_started(local_stack, tmp_path):
    status, _ = local_stack
    pids = [status[part]["pid"] for part in ("moto", "api", "sagemaker", "bedrock", "airflow")]
    family = []
    for pid in pids:
        parent = psutil.Process(pid)
        family += [parent, *parent.children(recursive=True)]
    assert len(family) > len(pids)  # Airflow runs a scheduler, triggerer, workers, ...
    env = {**os.environ, "IMGSIM_LOCAL_DIR": str(tmp_path)}  # another, empty stack dir
    subprocess.run(
        [sys.executable, "-m", "pipeline.local", "down"],
        env=env,
        check=True,
        timeout=60,
        capture_output=True,
    )
    assert all(p.is_running() for p in family[: len(pids)])  # nothing of ours was touched
