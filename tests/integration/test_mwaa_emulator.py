"""The MWAA emulator's side of InvokeRestApi as boto3's own `mwaa` client sees it, and the CLI's
MWAA path against it: an environment it does not front, an unsigned call, an Airflow that does
not answer. Its forwarding to a running Airflow is tested with the whole stack
(tests/e2e/test_local_stack.py)."""

from __future__ import annotations

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError
from typer.testing import CliRunner

from pipeline.cli.app import app
from pipeline.local.mwaa.server import Environment, MwaaEmulator
from pipeline.local.processes import free_port


@pytest.fixture
def emulator():
    # an Airflow URL nothing listens on: these tests never reach Airflow
    server = MwaaEmulator(Environment("my-mwaa", f"http://127.0.0.1:{free_port()}")).start()
    yield server
    server.stop()


def _client(url: str):
    return boto3.client(
        "mwaa",
        endpoint_url=url,
        region_name="us-east-1",
        config=Config(inject_host_prefix=False, retries={"max_attempts": 1}),
    )


def test_an_unknown_environment_is_resource_not_found(emulator):
    with pytest.raises(ClientError) as refused:
        _client(emulator.url).invoke_rest_api(Name="other", Path="/dags", Method="GET")
    assert refused.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_a_call_not_signed_for_mwaa_is_refused(emulator):
    body = {"Method": "GET", "Path": "/dags"}
    unsigned = requests.post(f"{emulator.url}/restapi/my-mwaa", json=body, timeout=10)
    assert unsigned.status_code == 403
    assert unsigned.headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"


def test_the_cli_names_the_environment_mwaa_does_not_know(emulator, tmp_path, monkeypatch):
    monkeypatch.setenv("IMGSIM_LOCAL_DIR", str(tmp_path / "no-stack"))
    monkeypatch.setenv("AWS_ENDPOINT_URL_MWAA", emulator.url)
    result = CliRunner().invoke(
        app, ["--mwaa-environment", "other", "campaign", "run", "demo"], catch_exceptions=False
    )
    assert result.exit_code == 1, result.output
    assert "MWAA environment other: ResourceNotFoundException" in result.output
