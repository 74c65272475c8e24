"""Airflow 3 on loopback for the local stack: `airflow standalone` (scheduler, triggerer,
dag-processor, API server and UI on SQLite) with the AWS connection pointing each service at
its local endpoint and holding the keys tasks sign with. The DAGs are the ones in dags/,
unchanged; the triggerer runs the embed queue's watcher and waits for the deferred transform."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import requests

from pipeline.local.config import LOCAL_SAGEMAKER_ROLE
from pipeline.local.processes import start_group, stop_group, wait_until
from pipeline.settings import Settings


def connection_json(settings: Settings, moto_url: str, sagemaker_url: str, bedrock_url: str) -> str:
    """AIRFLOW_CONN_AWS_DEFAULT: per-service endpoints in the connection's service_config."""
    services = {s: {"endpoint_url": moto_url} for s in ("s3", "sqs", "dynamodb", "sts", "iam")}
    services.update(
        {s: {"endpoint_url": sagemaker_url} for s in ("sagemaker", "sagemaker-runtime")}
    )
    services["bedrock-runtime"] = {"endpoint_url": bedrock_url}
    rds_data = settings.endpoint("rds-data")
    if rds_data:  # the Data API emulator in front of the vector index
        services["rds-data"] = {"endpoint_url": rds_data}
    return json.dumps(
        {
            "conn_type": "aws",
            "login": "local",
            "password": "local",
            "extra": {"region_name": settings.region, "service_config": services},
        }
    )


def airflow_env(
    home: Path,
    port: int,
    dags: Path,
    settings: Settings,
    moto_url: str,
    sagemaker_url: str,
    bedrock_url: str,
    embed_queue_url: str,
    model_data_url: str,
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL")}
    names = {k: v for k, v in settings.to_env().items() if not k.startswith("AWS_ENDPOINT_URL")}
    env.update(names)
    env.update(
        {
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "AIRFLOW_CONN_AWS_DEFAULT": connection_json(
                settings, moto_url, sagemaker_url, bedrock_url
            ),
            "AWS_ACCESS_KEY_ID": env.get("AWS_ACCESS_KEY_ID", "local"),
            "AWS_SECRET_ACCESS_KEY": env.get("AWS_SECRET_ACCESS_KEY", "local"),
            "IMGSIM_EMBED_QUEUE_URL": embed_queue_url,
            # the emulator's jobs take seconds: the triggerer asks about them that often
            "IMGSIM_TRANSFORM_POLL_SECONDS": "2",
            "IMGSIM_MODEL_DATA_URL": model_data_url,
            "IMGSIM_SAGEMAKER_ROLE_ARN": LOCAL_SAGEMAKER_ROLE,
            "IMGSIM_CAMPAIGNS_DIR": str(dags.parent / "campaigns"),
        }
    )
    return env


def start_airflow(env: dict[str, str], log: Path, timeout: float = 300) -> int:
    """Start `airflow standalone` in its own process group; return its pid once healthy (the
    timeout leaves room for a machine whose cores are busy with other work)."""
    Path(env["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    proc = start_group([str(Path(sys.executable).parent / "airflow"), "standalone"], log, env=env)
    url = f"http://127.0.0.1:{env['AIRFLOW__API__PORT']}/api/v2/monitor/health"

    def healthy() -> bool:
        status = requests.get(url, timeout=5).json()
        return all(
            status[c]["status"] == "healthy"
            for c in ("metadatabase", "scheduler", "triggerer", "dag_processor")
        )

    try:
        wait_until(healthy, timeout, "Airflow (airflow standalone)")
        # the generation campaigns' concurrency limit towards Bedrock
        subprocess.run(
            [
                str(Path(sys.executable).parent / "airflow"),
                "pools",
                "set",
                "bedrock",
                "2",
                "Bedrock InvokeModel",
            ],
            env=env,
            check=True,
            capture_output=True,
            timeout=120,
        )
    except BaseException:  # a start that fails leaves nothing running behind it
        stop_group(proc.pid)
        raise
    return proc.pid
