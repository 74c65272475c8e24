"""Where the local stack listens and keeps its files, and the settings that point at it."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from pipeline.aws_build import REPO_ROOT
from pipeline.settings import Settings

# The SageMaker execution role the local stack names (the emulator does not assume roles).
LOCAL_SAGEMAKER_ROLE = "arn:aws:iam::123456789012:role/imgsim-sagemaker"
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
    mwaa_port: int = 4600  # the MWAA emulator in front of Airflow (InvokeRestApi)
    airflow: bool = True
    stack_name: str = "imgsim-local"
    # the model `up` serves (sagemaker_jobs.artifacts names): ImageNet EfficientNet-Lite0 by
    # default; color-layout-v1 where a real ranking is not needed
    model: str = "efficientnet-lite0-imagenet"

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
            mwaa_port=int(env.get("IMGSIM_LOCAL_MWAA_PORT", 4600)),
            airflow=env.get("IMGSIM_LOCAL_AIRFLOW", "1").lower() not in ("0", "false", "no"),
            model=env.get("IMGSIM_LOCAL_MODEL", "efficientnet-lite0-imagenet"),
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
    def mwaa_url(self) -> str:
        return f"http://{self.host}:{self.mwaa_port}"

    @property
    def state_file(self) -> Path:
        return self.state_dir / "stack.json"

    @property
    def recording(self) -> Path:
        return self.state_dir / "moto-recording.jsonl"


def local_settings(config: LocalConfig, env: dict[str, str] | None = None) -> Settings:
    return (
        Settings.from_env(env)
        .with_endpoint(config.moto_url)
        .with_endpoint(config.sagemaker_url, services=("sagemaker", "sagemaker-runtime"))
        .with_endpoint(config.bedrock_url, services=("bedrock-runtime",))
        .with_endpoint(config.mwaa_url, services=("mwaa",))
    )


def child_env(settings: Settings) -> dict[str, str]:
    env = {**os.environ, **settings.to_env()}
    for key, value in LOCAL_CREDENTIALS.items():
        env.setdefault(key, value)
    return env


def isolated_settings(endpoint_url: str, name: str) -> Settings:
    """Settings whose bucket, tables and queues all carry `name`, on one moto endpoint: several
    stacks (a test's, a benchmark's) share one server without seeing each other's data."""
    return replace(
        Settings(),
        bucket=f"imgsim-{name}",
        images_table=f"Images-{name}",
        embeddings_table=f"Embeddings-{name}",
        shard_manifests_table=f"ShardManifests-{name}",
        idempotency_table=f"Idempotency-{name}",
        ingest_queue=f"ingest-{name}",
        embed_queue=f"embed-{name}",
    ).with_endpoint(endpoint_url)
