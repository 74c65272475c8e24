"""`imgsim up|status|env|down` as a newcomer runs it: background servers (Airflow left to the
other e2e tests), an upload seen through the API within seconds, and state kept across down/up."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest
import requests

from pipeline.local.processes import free_port, is_alive
from tests.helpers import gradient_jpeg
from tests.polling import eventually
from tests.process_guard import exports, run_imgsim, services, watch_stack_dir
from tests.stack_env import vector_db_env


@pytest.fixture
def cli(tmp_path):
    env = {
        **os.environ,
        "IMGSIM_LOCAL_DIR": str(tmp_path / "local"),
        "IMGSIM_LOCAL_MOTO_PORT": str(free_port()),
        "IMGSIM_LOCAL_API_PORT": str(free_port()),
        "IMGSIM_LOCAL_SAGEMAKER_PORT": str(free_port()),
        "IMGSIM_LOCAL_BEDROCK_PORT": str(free_port()),
        "IMGSIM_LOCAL_AIRFLOW": "0",
        **vector_db_env(),
    }  # Airflow is covered by tests/e2e

    watch_stack_dir(env["IMGSIM_LOCAL_DIR"])

    def run(*args: str, code: int = 0) -> str:
        result = run_imgsim(args, env, 300)
        assert result.returncode == code, result.stdout + result.stderr
        return result.stdout

    run.env = env  # type: ignore[attr-defined]
    yield run
    run_imgsim(["down"], env, 60)


def _wait_for(url: str, timeout: float) -> requests.Response:
    """The first 200 answer of GET `url`."""
    return eventually(
        lambda: (response := requests.get(url, timeout=5)).status_code == 200 and response,
        timeout,
        message=f"GET {url} answering 200",
    )


def _exports_and_s3(run: Any) -> tuple[dict[str, str], Any]:
    """What `env` exports, and an S3 client pointed at the stack as a user would make one."""
    exported = exports(run("env"))
    s3 = boto3.client(
        "s3",
        endpoint_url=exported["AWS_ENDPOINT_URL_S3"],
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
    )
    return exported, s3


def _data_api(exports: dict[str, str]) -> Any:
    """`sql(statement)` through the stack's RDS Data API, as `imgsim env` points boto3 at it."""
    client = boto3.client(
        "rds-data",
        endpoint_url=exports["AWS_ENDPOINT_URL_RDS_DATA"],
        region_name=exports["AWS_REGION"],
        aws_access_key_id="x",
        aws_secret_access_key="x",
    )
    return lambda statement: client.execute_statement(
        resourceArn=exports["IMGSIM_VECTOR_DB_CLUSTER_ARN"],
        secretArn=exports["IMGSIM_VECTOR_DB_SECRET_ARN"],
        database=exports["IMGSIM_VECTOR_DB_NAME"],
        sql=statement,
    )


def test_up_upload_down_up_keeps_the_record(cli):
    run = cli
    run("up")
    status = services(run("--json", "status"))
    assert status["running"] is True
    parts = ("moto", "api", "sagemaker", "bedrock", "postgres", "rds-data")
    assert {status[part]["health"] for part in parts} == {"healthy"}
    exports, s3 = _exports_and_s3(run)
    sql = _data_api(exports)
    sql("CREATE EXTENSION IF NOT EXISTS vector")
    sql("CREATE TABLE kept (v vector(3))")
    sql("INSERT INTO kept VALUES ('[1,2,3]')")
    api = exports["IMGSIM_API_URL"]
    started = time.monotonic()
    s3.put_object(
        Bucket=exports["IMGSIM_BUCKET"],
        Key="uploads/newcomer.jpg",
        Body=gradient_jpeg(),
        Metadata={"prompt": "a test pattern"},
    )
    record = _wait_for(f"{api}/images/newcomer", timeout=15)
    elapsed = time.monotonic() - started
    assert record.status_code == 200, record.text
    assert record.json()["status"] == "pending" and record.json()["prompt"] == "a test pattern"
    assert elapsed < 15

    run("down")
    assert not any(is_alive(status[part]["pid"]) for part in parts)
    assert services(run("--json", "status", code=3)) == {"running": False}

    run("up")
    again = requests.get(f"{api}/images/newcomer", timeout=10)
    assert again.status_code == 200
    assert again.json()["sha256"] == record.json()["sha256"]
    assert requests.get(again.json()["url"], timeout=10).content == gradient_jpeg()
    # the vector index's PostgreSQL keeps its data across `down` and `up` too
    assert sql("SELECT v FROM kept")["records"] == [[{"stringValue": "[1,2,3]"}]]


def test_state_survives_concurrent_large_uploads(cli):
    """Concurrent uploads of records larger than a pipe write used to interleave in moto's
    recording, and the next `up` died on the replay."""
    run = cli
    run("up")
    exports, s3 = _exports_and_s3(run)
    api, bucket = exports["IMGSIM_API_URL"], exports["IMGSIM_BUCKET"]
    photo = gradient_jpeg((320, 240))
    assert len(photo) > 8_000
    ids = [f"load{i:03d}" for i in range(120)]
    with ThreadPoolExecutor(16) as pool:
        list(
            pool.map(
                lambda i: s3.put_object(Bucket=bucket, Key=f"uploads/{i}.jpg", Body=photo), ids
            )
        )
    recorded = {i: _wait_for(f"{api}/images/{i}", timeout=60).json() for i in ids}
    assert all(r.get("status") == "pending" for r in recorded.values()), recorded

    run("down")
    out = run_imgsim(["up"], cli.env, 300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "unreadable" not in out.stderr
    for image_id in ids:
        again = requests.get(f"{api}/images/{image_id}", timeout=10)
        assert again.status_code == 200, (image_id, again.text)
        assert again.json()["sha256"] == recorded[image_id]["sha256"]
    assert s3.get_object(Bucket=bucket, Key="uploads/load007.jpg")["Body"].read() == photo
