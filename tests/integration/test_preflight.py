"""`imgsim preflight` against the local stack: the Bedrock emulator answers GetFoundationModel and
GetFoundationModelAvailability per region (from the request's signature) and plays an account's
Marketplace standing; moto serves Service Quotas without ListServiceQuotas, so that check says it
could not check; the MWAA emulator answers GetEnvironment. No local stack directory: the command
reads its settings from the environment, as on AWS."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from pipeline.aws_build.mwaa_bundle import MWAA_AIRFLOW_VERSION
from pipeline.cli.app import app
from pipeline.cli.errors import FAILED, OK
from pipeline.local.bedrock.catalogue import Access
from pipeline.local.bedrock.server import BedrockEmulator, Behaviour
from pipeline.local.config import LOCAL_CREDENTIALS
from pipeline.local.mwaa.server import Environment, MwaaEmulator
from pipeline.settings import ENDPOINT_VARIABLES

MODEL = "stability.stable-image-core-v1:1"


@pytest.fixture
def preflight(moto_server, tmp_path, monkeypatch):
    servers = []

    def run(
        *args: str, access: Access | None = None, airflow_version: str = MWAA_AIRFLOW_VERSION
    ) -> tuple[int, dict[str, dict], str]:
        emulator = BedrockEmulator(Behaviour(access=access)).start()
        mwaa = MwaaEmulator(Environment("my-mwaa", "http://127.0.0.1:9", airflow_version)).start()
        servers.extend((emulator, mwaa))
        monkeypatch.setenv("IMGSIM_LOCAL_DIR", str(tmp_path / "no-stack"))
        for variable in ENDPOINT_VARIABLES.values():
            monkeypatch.delenv(variable, raising=False)
        monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
        monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK", emulator.url)
        monkeypatch.setenv("AWS_ENDPOINT_URL_SERVICE_QUOTAS", moto_server.url)
        monkeypatch.setenv("AWS_ENDPOINT_URL_MWAA", mwaa.url)
        monkeypatch.setenv("AWS_REGION", "eu-west-1")  # the stack's; Bedrock keeps its own
        monkeypatch.delenv("IMGSIM_BEDROCK_REGION", raising=False)
        monkeypatch.delenv("IMGSIM_MWAA_ENVIRONMENT", raising=False)
        for key, value in LOCAL_CREDENTIALS.items():
            monkeypatch.setenv(key, value)
        result = CliRunner().invoke(app, ["--json", "preflight", "--model-id", MODEL, *args])
        checks = {row["check"]: row for row in json.loads(result.stdout)}
        return result.exit_code, checks, result.stderr

    yield run
    for server in servers:
        server.stop()


def test_an_account_that_can_run_the_stack_passes(preflight):
    code, checks, _ = preflight()
    assert code == OK
    assert checks["model offered and Active"]["status"] == "pass"
    assert "ACTIVE in us-west-2" in checks["model offered and Active"]["detail"]
    assert checks["model access (AWS Marketplace)"]["status"] == "pass"
    # moto does not implement ListServiceQuotas: said plainly, with the command to run by hand
    quota = checks["SageMaker transform quota"]
    assert quota["status"] == "could not check"
    assert "ListServiceQuotas in eu-west-1" in quota["detail"]
    assert "ml.m5.xlarge for transform job usage" in quota["fix"]
    mwaa = checks["MWAA Airflow version"]
    assert mwaa["status"] == "not asked" and "3.3.1" in mwaa["detail"]


def test_a_bedrock_region_that_does_not_offer_the_model_fails_with_the_fix(preflight):
    code, checks, stderr = preflight("--bedrock-region", "us-east-1")
    assert code == FAILED
    for name in ("model offered and Active", "model access (AWS Marketplace)"):
        check = checks[name]
        assert check["status"] == "fail", check
        assert "not offered by Bedrock in us-east-1" in check["detail"]
        assert "IMGSIM_BEDROCK_REGION" in check["fix"] and "BedrockRegion" in check["fix"]
    assert "2 check(s) failed" in stderr


def test_an_account_not_subscribed_yet_is_warned_that_the_first_call_subscribes(preflight):
    code, checks, _ = preflight(access=Access(agreement="NOT_AVAILABLE", entitled=False))
    assert code == OK
    access = checks["model access (AWS Marketplace)"]
    assert access["status"] == "warn"
    assert "first InvokeModel subscribes" in access["detail"]
    assert "aws-marketplace:Subscribe" in access["detail"]


@pytest.mark.parametrize(
    ("access", "says"),
    [
        (Access(agreement="ERROR", agreement_error="no valid payment method"), "payment"),
        (Access(authorized=False), "aws-marketplace:Subscribe"),
    ],
)
def test_an_account_that_cannot_get_model_access_fails(preflight, access, says):
    code, checks, _ = preflight(access=access)
    assert code == FAILED
    check = checks["model access (AWS Marketplace)"]
    assert check["status"] == "fail" and says in check["fix"]


def test_the_named_mwaa_environment_runs_the_airflow_the_bundle_targets(preflight):
    code, checks, _ = preflight("--mwaa-environment", "my-mwaa")
    assert code == OK
    check = checks["MWAA Airflow version"]
    assert check["status"] == "pass" and f"runs Airflow {MWAA_AIRFLOW_VERSION}" in check["detail"]


@pytest.mark.parametrize(
    ("environment", "says"),
    [("my-mwaa", "runs Airflow 3.0.6"), ("no-such-env", "no MWAA environment named no-such-env")],
)
def test_an_older_or_missing_mwaa_environment_fails_with_the_fix(preflight, environment, says):
    code, checks, _ = preflight("--mwaa-environment", environment, airflow_version="3.0.6")
    assert code == FAILED
    check = checks["MWAA Airflow version"]
    assert check["status"] == "fail" and says in check["detail"]
    assert f"--airflow-version {MWAA_AIRFLOW_VERSION}" in check["fix"]
