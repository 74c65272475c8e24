"""Which stack a command talks to: the options or environment when given (AWS, another host),
else the local stack's state file (`imgsim up`)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from botocore.config import Config

from pipeline import aws
from pipeline.cli.airflow_api import AirflowClient, HttpTransport, MwaaTransport, access_token
from pipeline.cli.errors import NOT_RUNNING, CliError
from pipeline.cli.http_api import ApiClient
from pipeline.local.config import LOCAL_CREDENTIALS, LocalConfig, local_settings
from pipeline.local.processes import is_alive
from pipeline.local.state_file import StackState, read_state
from pipeline.settings import Settings


@dataclass(frozen=True)
class Target:
    config: LocalConfig
    api_url: str | None = None
    api_key: str | None = None
    airflow_url: str | None = None
    airflow_token: str | None = None
    airflow_username: str | None = None
    airflow_password: str | None = None
    mwaa_environment: str | None = None  # Airflow through MWAA's InvokeRestApi (IAM-signed)

    def local_state(self) -> StackState | None:
        """The local stack's state when every process it started is alive."""
        state = read_state(self.config)
        if state and all(is_alive(pid) for pid in state.pids().values()):
            return state
        return None

    def api(self) -> ApiClient:
        url = self.api_url or getattr(self.local_state(), "api_url", None)
        if not url:
            raise CliError(
                "the local stack is not running: start it with `imgsim up`, or pass --api-url "
                "(IMGSIM_API_URL) for a deployed stack",
                NOT_RUNNING,
            )
        return ApiClient(url, self.api_key)

    def airflow(self) -> AirflowClient:
        if self.mwaa_environment:
            return self.mwaa_airflow(self.mwaa_environment)
        url = self.airflow_url or getattr(self.local_state(), "airflow_url", None)
        if not url:
            raise CliError(
                "no Airflow to talk to: the local stack is not running with Airflow "
                "(`imgsim up`), and no --airflow-url (IMGSIM_AIRFLOW_URL) was given",
                NOT_RUNNING,
            )
        token = self.airflow_token
        if not token and self.airflow_username and self.airflow_password:
            token = access_token(url, self.airflow_username, self.airflow_password)
        return AirflowClient(HttpTransport(url, token), url)

    def mwaa_airflow(self, environment: str) -> AirflowClient:
        """The environment's Airflow through InvokeRestApi: MWAA's endpoint for the region, or
        a local one (AWS_ENDPOINT_URL_MWAA; the local stack's emulator while it runs)."""
        settings = self.settings()
        # a local endpoint takes no `env.` host prefix (MWAA's REST API host on AWS)
        local = Config(inject_host_prefix=False) if settings.endpoint("mwaa") else None
        client = aws.client(settings, "mwaa", config=local)
        return AirflowClient(MwaaTransport(environment, client), f"MWAA environment {environment}")

    def settings(self) -> Settings:
        """AWS-side settings: the local stack's endpoints when it runs, else the environment."""
        if self.local_state() is None:
            return Settings.from_env()
        for key, value in LOCAL_CREDENTIALS.items():  # moto takes any; boto3 wants some
            os.environ.setdefault(key, value)
        return local_settings(self.config)
