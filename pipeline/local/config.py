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
LOCAL_ACCOUNT = "123456789012"
# The names of the vector index's cluster and secret: the RDS Data API emulator answers for
# their ARNs (vector_db_arns) in the stack's region, as the template's cluster would.
VECTOR_DB_CLUSTER = "imgsim-vector"
VECTOR_DB_SECRET = "imgsim-vector-db-local0"  # a secret's ARN ends in 6 random characters


def vector_db_arns(region: str) -> tuple[str, str]:
    """(cluster ARN, secret ARN) of the local vector index's PostgreSQL."""
    return (
        f"arn:aws:rds:{region}:{LOCAL_ACCOUNT}:cluster:{VECTOR_DB_CLUSTER}",
        f"arn:aws:secretsmanager:{region}:{LOCAL_ACCOUNT}:secret:{VECTOR_DB_SECRET}",
    )


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
    postgres_port: int = 5433  # PostgreSQL + pgvector: the vector index
    rds_data_port: int = 4610  # the RDS Data API emulator in front of it
    # PostgreSQL's data directory (default: postgres/ under state_dir). As root the server runs
    # as an unprivileged user, which must be able to reach it.
    postgres_dir: Path | None = None
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
            postgres_port=int(env.get("IMGSIM_LOCAL_POSTGRES_PORT", 5433)),
            rds_data_port=int(env.get("IMGSIM_LOCAL_RDS_DATA_PORT", 4610)),
            postgres_dir=Path(env["IMGSIM_LOCAL_POSTGRES_DIR"])
            if env.get("IMGSIM_LOCAL_POSTGRES_DIR")
            else None,
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
    def rds_data_url(self) -> str:
        return f"http://{self.host}:{self.rds_data_port}"

    @property
    def postgres_data_dir(self) -> Path:
        return self.postgres_dir or self.state_dir / "postgres"

    @property
    def state_file(self) -> Path:
        return self.state_dir / "stack.json"

    @property
    def recording(self) -> Path:
        return self.state_dir / "moto-recording.jsonl"


def local_settings(config: LocalConfig, env: dict[str, str] | None = None) -> Settings:
    settings = (
        Settings.from_env(env)
        .with_endpoint(config.moto_url)
        .with_endpoint(config.sagemaker_url, services=("sagemaker", "sagemaker-runtime"))
        .with_endpoint(config.bedrock_url, services=("bedrock-runtime",))
        .with_endpoint(config.mwaa_url, services=("mwaa",))
        .with_endpoint(config.rds_data_url, services=("rds-data",))
    )
    cluster_arn, secret_arn = vector_db_arns(settings.region)
    return replace(settings, vector_db_cluster_arn=cluster_arn, vector_db_secret_arn=secret_arn)


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
