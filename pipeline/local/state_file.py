"""The state file of a running local stack: which process groups `up` started, and where."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from pipeline.local.config import LocalConfig


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
    mwaa_pid: int | None = None  # the MWAA emulator, which runs with Airflow
    mwaa_url: str | None = None
    postgres_pid: int | None = None  # PostgreSQL + pgvector (the vector index)
    postgres_url: str | None = None  # postgresql://user@host:port/database
    rds_data_pid: int | None = None  # the RDS Data API emulator in front of it
    rds_data_url: str | None = None

    def pids(self) -> dict[str, int]:
        pids = {
            "moto": self.moto_pid,
            "api": self.services_pid,
            "sagemaker": self.sagemaker_pid,
            "bedrock": self.bedrock_pid,
        }
        if self.airflow_pid:
            pids["airflow"] = self.airflow_pid
        if self.mwaa_pid:
            pids["mwaa"] = self.mwaa_pid
        if self.postgres_pid:
            pids["postgres"] = self.postgres_pid
        if self.rds_data_pid:
            pids["rds-data"] = self.rds_data_pid
        return pids


def read_state(config: LocalConfig) -> StackState | None:
    if not config.state_file.exists():
        return None
    return StackState(**json.loads(config.state_file.read_text()))


def write_state(config: LocalConfig, state: StackState) -> None:
    config.state_file.write_text(json.dumps(asdict(state)))


def clear_state(config: LocalConfig) -> None:
    config.state_file.unlink(missing_ok=True)
