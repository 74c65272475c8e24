"""`up`, `down` and `status` of the local stack: which processes start, in which order."""

from __future__ import annotations

import os
import sys

import boto3
import requests

from pipeline import aws
from pipeline.aws_build import REPO_ROOT
from pipeline.local.airflow_standalone import airflow_env, start_airflow
from pipeline.local.config import LOCAL_CREDENTIALS, LocalConfig, child_env, local_settings
from pipeline.local.deploy import StackSpec, deploy
from pipeline.local.embed_endpoint import ensure_endpoint
from pipeline.local.model_artifact import ensure_model
from pipeline.local.moto_recording import restore_state
from pipeline.local.moto_server import MotoServer
from pipeline.local.processes import is_alive, start_group, stop_group, wait_until
from pipeline.local.state_file import StackState, clear_state, read_state, write_state
from pipeline.local.vector_db import VectorDb, start_vector_db, stop_postgres


def up(config: LocalConfig) -> StackState:
    """Start moto (replaying the recorded state), deploy the template, start the services."""
    for key, value in LOCAL_CREDENTIALS.items():  # moto takes any; boto3 wants some
        os.environ.setdefault(key, value)
    state = read_state(config)
    if state and all(is_alive(pid) for pid in state.pids().values()):
        return state
    if state:
        down(config)
    config.state_dir.mkdir(parents=True, exist_ok=True)
    settings = local_settings(config)
    moto = MotoServer(config.host, config.moto_port).start(
        config.state_dir / "moto.log", recording=config.recording
    )
    started: list[int] = []
    vector_db: VectorDb | None = None
    try:
        restore_state(moto, config.recording)
        deploy(settings, StackSpec(name=config.stack_name, code_bucket=f"{settings.bucket}-code"))
        model_data_url = ensure_model(settings, config.model)
        env = child_env(settings)
        vector_db = start_vector_db(config, settings, env)
        started += [vector_db.postgres_pid, vector_db.rds_data_pid]
        sagemaker = _start_sagemaker(config, env)
        started.append(sagemaker)
        ensure_endpoint(settings, model_data_url)
        bedrock = start_group(
            [sys.executable, "-m", "pipeline.local.bedrock", "--port", str(config.bedrock_port)],
            config.state_dir / "bedrock.log",
            env=env,
            cwd=REPO_ROOT,
        ).pid
        started.append(bedrock)
        services = start_group(
            [sys.executable, "-m", "pipeline.local", "services", "--port", str(config.api_port)],
            config.state_dir / "services.log",
            env=env,
            cwd=REPO_ROOT,
        )
        started.append(services.pid)
        wait_until(
            lambda: requests.get(f"{config.api_url}/health", timeout=2).ok,
            60,
            f"the local API on {config.api_url}",
        )
        airflow_pid = mwaa_pid = None
        if config.airflow:
            queue_url = aws.client(settings, "sqs").get_queue_url(QueueName=settings.embed_queue)[
                "QueueUrl"
            ]
            airflow_pid = start_airflow(
                airflow_env(
                    config.state_dir / "airflow",
                    config.airflow_port,
                    REPO_ROOT / "dags",
                    settings,
                    config.moto_url,
                    config.sagemaker_url,
                    config.bedrock_url,
                    queue_url,
                    model_data_url,
                ),
                config.state_dir / "airflow.log",
            )
            started.append(airflow_pid)
            mwaa_pid = _start_mwaa(config, env)
            started.append(mwaa_pid)
    except BaseException:
        for pid in reversed(started):
            if vector_db is not None and pid == vector_db.postgres_pid:
                stop_postgres(pid, config.postgres_data_dir)
            else:
                stop_group(pid)
        moto.stop()
        raise
    assert moto.pid is not None and vector_db is not None
    state = StackState(
        moto_pid=moto.pid,
        services_pid=services.pid,
        sagemaker_pid=sagemaker,
        moto_url=config.moto_url,
        api_url=config.api_url,
        sagemaker_url=config.sagemaker_url,
        bedrock_pid=bedrock,
        bedrock_url=config.bedrock_url,
        airflow_pid=airflow_pid,
        airflow_url=config.airflow_url if airflow_pid else None,
        mwaa_pid=mwaa_pid,
        mwaa_url=config.mwaa_url if mwaa_pid else None,
        postgres_pid=vector_db.postgres_pid,
        postgres_url=vector_db.postgres_url,
        rds_data_pid=vector_db.rds_data_pid,
        rds_data_url=vector_db.rds_data_url,
    )
    write_state(config, state)
    return state


def _start_sagemaker(config: LocalConfig, env: dict[str, str]) -> int:
    proc = start_group(
        [
            sys.executable,
            "-m",
            "pipeline.local.sagemaker",
            "--port",
            str(config.sagemaker_port),
            "--work-dir",
            str(config.state_dir / "sagemaker"),
        ],
        config.state_dir / "sagemaker.log",
        env=env,
        cwd=REPO_ROOT,
    )
    sagemaker = boto3.client(
        "sagemaker", endpoint_url=config.sagemaker_url, region_name="us-east-1"
    )
    try:
        wait_until(lambda: bool(sagemaker.list_transform_jobs()), 60, "the SageMaker emulator")
    except BaseException:
        stop_group(proc.pid)
        raise
    return proc.pid


def _start_mwaa(config: LocalConfig, env: dict[str, str]) -> int:
    """The MWAA emulator in front of the stack's Airflow, answering for the stack's name."""
    command = [sys.executable, "-m", "pipeline.local.mwaa", "--port", str(config.mwaa_port)]
    command += ["--environment", config.stack_name, "--airflow-url", config.airflow_url]
    proc = start_group(command, config.state_dir / "mwaa.log", env=env, cwd=REPO_ROOT)
    try:
        wait_until(lambda: requests.get(config.mwaa_url, timeout=2).ok, 60, "the MWAA emulator")
    except BaseException:
        stop_group(proc.pid)
        raise
    return proc.pid


def down(config: LocalConfig) -> bool:
    """Stop what `up` started (by the process groups it recorded). The recording stays."""
    state = read_state(config)
    if state is None:
        return False
    for pid in (
        state.mwaa_pid,
        state.airflow_pid,
        state.services_pid,
        state.bedrock_pid,
        state.sagemaker_pid,
        state.rds_data_pid,
    ):
        if pid:
            stop_group(pid)
    if state.postgres_pid:
        stop_postgres(state.postgres_pid, config.postgres_data_dir)
    stop_group(state.moto_pid)
    clear_state(config)
    return True


def status(config: LocalConfig) -> dict[str, object]:
    state = read_state(config)
    if state is None:
        return {"running": False}
    urls = {
        "moto": state.moto_url,
        "api": state.api_url,
        "sagemaker": state.sagemaker_url,
        "bedrock": state.bedrock_url,
        "airflow": state.airflow_url,
        "mwaa": state.mwaa_url,
        "postgres": state.postgres_url,
        "rds-data": state.rds_data_url,
    }
    parts = {
        name: {"pid": pid, "url": urls[name], "alive": is_alive(pid)}
        for name, pid in state.pids().items()
    }
    return {"running": all(p["alive"] for p in parts.values()), **parts}
