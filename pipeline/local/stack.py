"""`up`, `down` and `status` of the local stack, with its state kept across restarts."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import boto3
import requests

from pipeline import aws
from pipeline.local.airflow import airflow_env, start_airflow
from pipeline.local.deploy import REPO_ROOT, StackSpec, deploy
from pipeline.local.endpoints import ensure_endpoint
from pipeline.local.moto_server import MotoServer
from pipeline.local.processes import is_alive, start_group, stop_group, wait_until
from pipeline.local.recording import filter_recording
from pipeline.objects import ObjectStore
from pipeline.settings import Settings
from sagemaker_jobs.build_model import build

LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}


@dataclass(frozen=True)
class LocalConfig:
    """Where the local stack listens and keeps its files (IMGSIM_LOCAL_* variables)."""

    state_dir: Path
    host: str = "127.0.0.1"
    moto_port: int = 4566
    api_port: int = 8000
    sagemaker_port: int = 4580
    bedrock_port: int = 4590
    airflow_port: int = 8080
    airflow: bool = True
    stack_name: str = "imgsim-local"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> LocalConfig:
        env = dict(os.environ if env is None else env)
        return cls(
            state_dir=Path(env.get("IMGSIM_LOCAL_DIR", REPO_ROOT / ".local")),
            moto_port=int(env.get("IMGSIM_LOCAL_MOTO_PORT", 4566)),
            api_port=int(env.get("IMGSIM_LOCAL_API_PORT", 8000)),
            sagemaker_port=int(env.get("IMGSIM_LOCAL_SAGEMAKER_PORT", 4580)),
            bedrock_port=int(env.get("IMGSIM_LOCAL_BEDROCK_PORT", 4590)),
            airflow_port=int(env.get("IMGSIM_LOCAL_AIRFLOW_PORT", 8080)),
            airflow=env.get("IMGSIM_LOCAL_AIRFLOW", "1").lower() not in ("0", "false", "no"),
        )

    @property
    def moto_url(self) -> str:
        return f"http://{self.host}:{self.moto_port}"

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.api_port}"

    @property
    def sagemaker_url(self) -> str:
        return f"http://{self.host}:{self.sagemaker_port}"

    @property
    def bedrock_url(self) -> str:
        return f"http://{self.host}:{self.bedrock_port}"

    @property
    def airflow_url(self) -> str:
        return f"http://{self.host}:{self.airflow_port}"

    @property
    def state_file(self) -> Path:
        return self.state_dir / "stack.json"

    @property
    def recording(self) -> Path:
        return self.state_dir / "moto-recording.jsonl"


@dataclass
class StackState:
    moto_pid: int
    services_pid: int
    sagemaker_pid: int
    moto_url: str
    api_url: str
    sagemaker_url: str
    bedrock_pid: int
    bedrock_url: str
    airflow_pid: int | None = None
    airflow_url: str | None = None

    def pids(self) -> dict[str, int]:
        pids = {"moto": self.moto_pid, "api": self.services_pid,
                "sagemaker": self.sagemaker_pid, "bedrock": self.bedrock_pid}
        if self.airflow_pid:
            pids["airflow"] = self.airflow_pid
        return pids


def local_settings(config: LocalConfig, env: dict[str, str] | None = None) -> Settings:
    return Settings.from_env(env).with_endpoint(config.moto_url).with_endpoint(
        config.sagemaker_url, services=("sagemaker", "sagemaker-runtime")).with_endpoint(
        config.bedrock_url, services=("bedrock-runtime",))


def ensure_model(settings: Settings, state_dir: Path) -> str:
    """The offline color-layout-v1 model artifact in the bucket (built once)."""
    key = "models/color-layout-v1/model.tar.gz"
    objects = ObjectStore(settings)
    if not objects.exists(key):
        path = state_dir / "models" / "color-layout-v1.tar.gz"
        build(path, family="color-layout-v1")
        objects.client.upload_file(str(path), settings.bucket, key)
    return f"s3://{settings.bucket}/{key}"


def child_env(settings: Settings) -> dict[str, str]:
    env = {**os.environ, **settings.to_env()}
    for key, value in LOCAL_CREDENTIALS.items():
        env.setdefault(key, value)
    return env


def read_state(config: LocalConfig) -> StackState | None:
    if not config.state_file.exists():
        return None
    return StackState(**json.loads(config.state_file.read_text()))


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
        config.state_dir / "moto.log", recording=config.recording)
    started: list[int] = []
    try:
        _restore_state(moto, config.recording)
        deploy(settings, StackSpec(name=config.stack_name, code_bucket=f"{settings.bucket}-code"))
        model_data_url = ensure_model(settings, config.state_dir)
        env = child_env(settings)
        sagemaker = _start_sagemaker(config, env)
        started.append(sagemaker)
        ensure_endpoint(settings, model_data_url)
        bedrock = start_group([sys.executable, "-m", "pipeline.local.bedrock", "--port",
                               str(config.bedrock_port)], config.state_dir / "bedrock.log",
                              env=env, cwd=REPO_ROOT).pid
        started.append(bedrock)
        services = start_group(
            [sys.executable, "-m", "pipeline.local", "services", "--port", str(config.api_port)],
            config.state_dir / "services.log", env=env, cwd=REPO_ROOT)
        started.append(services.pid)
        wait_until(lambda: requests.get(f"{config.api_url}/health", timeout=2).ok, 60,
                   f"the local API on {config.api_url}")
        airflow_pid = None
        if config.airflow:
            queue_url = aws.client(settings, "sqs").get_queue_url(
                QueueName=settings.embed_queue)["QueueUrl"]
            airflow_pid = start_airflow(
                airflow_env(config.state_dir / "airflow", config.airflow_port,
                            REPO_ROOT / "dags", settings, config.moto_url, config.sagemaker_url,
                            config.bedrock_url, queue_url, model_data_url),
                config.state_dir / "airflow.log")
    except BaseException:
        for pid in reversed(started):
            stop_group(pid)
        moto.stop()
        raise
    assert moto.pid is not None
    state = StackState(moto_pid=moto.pid, services_pid=services.pid, sagemaker_pid=sagemaker,
                       moto_url=config.moto_url, api_url=config.api_url,
                       sagemaker_url=config.sagemaker_url, bedrock_pid=bedrock,
                       bedrock_url=config.bedrock_url, airflow_pid=airflow_pid,
                       airflow_url=config.airflow_url if airflow_pid else None)
    config.state_file.write_text(json.dumps(asdict(state)))
    return state


def _restore_state(moto: MotoServer, recording: Path) -> None:
    """Replay what changed durable state last time, then record from here on."""
    if recording.exists() and recording.stat().st_size:
        kept = filter_recording(recording.read_text().splitlines())
        recording.write_text("".join(line + "\n" for line in kept))
        moto.recorder("replay-recording")
    moto.recorder("start-recording")


def _start_sagemaker(config: LocalConfig, env: dict[str, str]) -> int:
    proc = start_group([sys.executable, "-m", "pipeline.local.sagemaker", "--port",
                        str(config.sagemaker_port), "--work-dir",
                        str(config.state_dir / "sagemaker")],
                       config.state_dir / "sagemaker.log", env=env, cwd=REPO_ROOT)
    sagemaker = boto3.client("sagemaker", endpoint_url=config.sagemaker_url,
                             region_name="us-east-1")
    try:
        wait_until(lambda: bool(sagemaker.list_transform_jobs()), 60, "the SageMaker emulator")
    except BaseException:
        stop_group(proc.pid)
        raise
    return proc.pid


def down(config: LocalConfig) -> bool:
    """Stop what `up` started (by the process groups it recorded). The recording stays."""
    state = read_state(config)
    if state is None:
        return False
    for pid in (state.airflow_pid, state.services_pid, state.bedrock_pid, state.sagemaker_pid,
                state.moto_pid):
        if pid:
            stop_group(pid)
    config.state_file.unlink(missing_ok=True)
    return True


def status(config: LocalConfig) -> dict[str, object]:
    state = read_state(config)
    if state is None:
        return {"running": False}
    urls = {"moto": state.moto_url, "api": state.api_url, "sagemaker": state.sagemaker_url,
            "bedrock": state.bedrock_url, "airflow": state.airflow_url}
    parts = {name: {"pid": pid, "url": urls[name], "alive": is_alive(pid)}
             for name, pid in state.pids().items()}
    return {"running": all(p["alive"] for p in parts.values()), **parts}
