"""The local stack's vector index: PostgreSQL + pgvector (its data under the stack's directory,
so it survives `down` and `up`) and the RDS Data API emulator in front of it, answering for the
cluster and secret ARNs `local_settings` names, as Aurora's Data API answers on AWS."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import boto3
from botocore.config import Config

from pipeline.aws_build import REPO_ROOT
from pipeline.local import postgres
from pipeline.local.config import LocalConfig
from pipeline.local.processes import start_group, stop_group, wait_until
from pipeline.settings import Settings


@dataclass(frozen=True)
class VectorDb:
    postgres_pid: int
    postgres_url: str
    rds_data_pid: int
    rds_data_url: str


def start_vector_db(config: LocalConfig, settings: Settings, env: dict[str, str]) -> VectorDb:
    """PostgreSQL on config.postgres_port, the database settings.vector_db_name created when
    absent, then the emulator on config.rds_data_port, answering once it reaches the database."""
    server = postgres.start(
        config.postgres_data_dir,
        config.postgres_port,
        log_path=config.state_dir / "postgres.log",
    )
    try:
        postgres.create_database(server, settings.vector_db_name)
        emulator = start_rds_data(
            config.rds_data_port,
            server,
            settings,
            config.state_dir / "rds-data.log",
            env,
            host=config.host,
        )
    except BaseException:
        postgres.stop(server)
        raise
    return VectorDb(
        postgres_pid=server.pid,
        postgres_url=f"postgresql://{postgres.SUPERUSER}@{config.host}:{server.port}/"
        f"{settings.vector_db_name}",
        rds_data_pid=emulator,
        rds_data_url=config.rds_data_url,
    )


def start_rds_data(
    port: int,
    server: postgres.Server,
    settings: Settings,
    log: Path,
    env: dict[str, str],
    host: str = "127.0.0.1",
) -> int:
    """`python -m pipeline.local.rds_data` for settings' cluster and secret ARNs in front of
    server; its PID once a signed ExecuteStatement on settings.vector_db_name answers."""
    command = [sys.executable, "-m", "pipeline.local.rds_data", "--host", host]
    command += ["--port", str(port), "--pg-port", str(server.port)]
    command += ["--resource-arn", settings.vector_db_cluster_arn]
    command += ["--secret-arn", settings.vector_db_secret_arn]
    command += ["--default-database", settings.vector_db_name]
    proc = start_group(command, log, env=env, cwd=REPO_ROOT)
    client = boto3.client(
        "rds-data",
        endpoint_url=f"http://{host}:{port}",
        region_name=settings.region,
        aws_access_key_id=env.get("AWS_ACCESS_KEY_ID", "local"),
        aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY", "local"),
        config=Config(retries={"max_attempts": 1}),
    )

    def answers() -> bool:
        client.execute_statement(
            resourceArn=settings.vector_db_cluster_arn,
            secretArn=settings.vector_db_secret_arn,
            database=settings.vector_db_name,
            sql="SELECT 1",
        )
        return True

    try:
        wait_until(answers, 60, "the RDS Data API emulator")
    except BaseException:
        stop_group(proc.pid)
        raise
    return proc.pid


def stop_postgres(pid: int, data_dir: Path) -> None:
    """A fast shutdown (clients disconnected, a clean checkpoint), then its process group."""
    postgres.stop(postgres.Server(pid=pid, port=0, data_dir=data_dir))
