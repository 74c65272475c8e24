"""`imgsim` against the whole local stack it starts itself (Airflow included): up, status, an
upload waited for until the queue-triggered DAG embeds it, a campaign run through Airflow's
REST API followed to its end, a lookup of a local file, then down (exit 3 after)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator

import pytest

from pipeline.local.processes import free_port
from tests.helpers import gradient_jpeg
from tests.process_guard import run_imgsim, watch_stack_dir
from tests.stack_env import vector_db_env


@pytest.fixture(scope="module")
def imgsim(tmp_path_factory) -> Iterator:
    env = {
        **os.environ,
        "IMGSIM_LOCAL_DIR": str(tmp_path_factory.mktemp("cli-stack")),
        # the cheap descriptor: this test is about the CLI, tests/e2e/test_local_stack
        # covers the default model
        "IMGSIM_LOCAL_MODEL": "color-layout-v1",
        **{
            f"IMGSIM_LOCAL_{p}_PORT": str(free_port())
            for p in ("MOTO", "API", "SAGEMAKER", "BEDROCK", "AIRFLOW", "MWAA")
        },
        **vector_db_env(),
    }
    env.pop("AIRFLOW_HOME", None)

    watch_stack_dir(env["IMGSIM_LOCAL_DIR"])

    def run(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
        return run_imgsim(["--json", *args], env, timeout)

    yield run
    run("down", timeout=120)


def test_the_cli_drives_the_whole_stack(imgsim, tmp_path):
    up = imgsim("up")
    assert up.returncode == 0, up.stderr[-3000:]
    status = json.loads(up.stdout)
    assert status["running"] is True
    assert {s["service"]: s["health"] for s in status["services"]} == dict.fromkeys(
        ("moto", "api", "sagemaker", "bedrock", "airflow", "mwaa", "postgres", "rds-data"),
        "healthy",
    )

    photo = tmp_path / "owl.jpg"
    photo.write_bytes(gradient_jpeg((96, 64)))
    upload = imgsim("upload", str(photo), "--prompt", "an e2e owl", "--wait", "--timeout", "600")
    assert upload.returncode == 0, upload.stderr[-3000:]
    [row] = json.loads(upload.stdout)
    assert row["status"] == "embedded"

    similar = imgsim("similar", str(photo), "--prompt", "an e2e owl", "-k", "3")
    assert similar.returncode == 0, similar.stderr[-3000:]
    assert [r["image_id"] for r in json.loads(similar.stdout)["results"]] == [row["image_id"]]

    campaign = imgsim("campaign", "run", "demo", "--wait", "--timeout", "600")
    assert campaign.returncode == 0, campaign.stderr[-3000:]
    report = json.loads(campaign.stdout)
    assert report["state"] == "success"
    assert [p["prompt"] for p in report["prompts"]] == ["a cup of coffee", "a red fox"]
    assert all(p["state"] == "success" for p in report["prompts"])
    assert report["summary"]["generated"] + report["summary"]["existing"] == 6

    assert imgsim("down").returncode == 0
    assert imgsim("status").returncode == 3
