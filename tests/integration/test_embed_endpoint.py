"""The embedding endpoint deployed by pipeline.embedding.endpoint (sagemaker-core's resources)
against the SageMaker emulator: created, left alone, switched to a new artifact."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace

import boto3
import pytest
from typer.testing import CliRunner

from pipeline import aws
from pipeline.cli.app import app
from pipeline.embedding.endpoint import EndpointSpec, deploy
from pipeline.embedding.transform_config import serving_image_uri
from pipeline.local.config import LOCAL_SAGEMAKER_ROLE
from pipeline.local.embed_endpoint import ensure_endpoint
from sagemaker_jobs.build_model import build
from tests.helpers import gradient_jpeg

TINY, COLOR = "clip-tiny-random-init-seed0", "color-layout-v1"


@pytest.fixture
def settings(stack, sagemaker_emulator):
    return replace(stack.settings, embed_endpoint=f"embed-{uuid.uuid4().hex[:8]}").with_endpoint(
        sagemaker_emulator, ("sagemaker", "sagemaker-runtime")
    )


@pytest.fixture
def artifacts(settings, tiny_clip_artifact, tmp_path):
    """Two model artifacts in the bucket: tiny CLIP and color layout."""
    build(tmp_path / "color.tar.gz", family="color-layout-v1")
    s3 = aws.client(settings, "s3")
    urls = {}
    for model_id, path in ((TINY, tiny_clip_artifact), (COLOR, tmp_path / "color.tar.gz")):
        s3.upload_file(str(path), settings.bucket, f"models/{model_id}/model.tar.gz")
        urls[model_id] = f"s3://{settings.bucket}/models/{model_id}/model.tar.gz"
    return urls


def _embed(settings):
    response = aws.client(settings, "sagemaker-runtime").invoke_endpoint(
        EndpointName=settings.embed_endpoint,
        ContentType="image/jpeg",
        Accept="application/json",
        Body=gradient_jpeg(),
    )
    return json.loads(response["Body"].read())


def _describe(settings):
    endpoint = aws.client(settings, "sagemaker").describe_endpoint(
        EndpointName=settings.embed_endpoint
    )
    endpoint.pop("ResponseMetadata")
    return endpoint


def test_deploy_creates_an_endpoint_that_answers_a_vector(settings, artifacts):
    deployment = ensure_endpoint(settings, artifacts[TINY])
    assert deployment.action == "created"
    endpoint = _describe(settings)
    assert endpoint["EndpointStatus"] == "InService"
    assert endpoint["EndpointConfigName"] == deployment.config_name
    model = aws.client(settings, "sagemaker").describe_model(ModelName=deployment.config_name)
    assert model["ExecutionRoleArn"] == LOCAL_SAGEMAKER_ROLE
    assert model["PrimaryContainer"]["ModelDataUrl"] == artifacts[TINY]
    # no image given: the SageMaker PyTorch inference image of the region
    assert model["PrimaryContainer"]["Image"] == serving_image_uri(settings.region, "ml.m5.large")
    # isolated (the emulator checked that the artifact installs without an index), one worker
    assert model["EnableNetworkIsolation"] is True
    env = model["PrimaryContainer"]["Environment"]
    assert env["SAGEMAKER_TS_MIN_WORKERS"] == env["SAGEMAKER_TS_MAX_WORKERS"] == "1"
    assert env["IMGSIM_PREPARATION"] == "threads"  # one image per request: no process pool
    result = _embed(settings)
    assert result["model_id"] == TINY and len(result["embedding"]) == 32


def test_a_redeploy_of_the_same_artifact_changes_nothing(settings, artifacts):
    first = ensure_endpoint(settings, artifacts[TINY])
    before = _describe(settings)
    again = ensure_endpoint(settings, artifacts[TINY])
    assert again == replace(first, action="unchanged")
    assert _describe(settings) == before


def test_a_new_artifact_switches_the_endpoint_to_the_new_model(settings, artifacts):
    first = ensure_endpoint(settings, artifacts[TINY])
    assert _embed(settings)["model_id"] == TINY
    second = ensure_endpoint(settings, artifacts[COLOR])
    assert second.action == "updated" and second.config_name != first.config_name
    endpoint = _describe(settings)
    assert endpoint["EndpointStatus"] == "InService"
    assert endpoint["EndpointConfigName"] == second.config_name
    assert _embed(settings)["model_id"] == COLOR
    # the old model and config stay (a rollback is an UpdateEndpoint to them)
    sm = aws.client(settings, "sagemaker")
    assert sm.describe_endpoint_config(EndpointConfigName=first.config_name)
    assert ensure_endpoint(settings, artifacts[TINY]).action == "updated"
    assert _embed(settings)["model_id"] == TINY


def test_an_update_that_fails_keeps_the_old_model_serving(settings, artifacts):
    ensure_endpoint(settings, artifacts[TINY])
    with pytest.raises(RuntimeError, match="did not switch"):
        ensure_endpoint(settings, f"s3://{settings.bucket}/models/missing/model.tar.gz")
    assert _describe(settings)["EndpointStatus"] == "InService"
    assert _embed(settings)["model_id"] == TINY


def test_the_execution_role_is_required(settings, artifacts):
    with pytest.raises(ValueError, match="role"):
        deploy(settings, EndpointSpec(model_data_url=artifacts[TINY], role_arn=""))


def test_the_cli_deploys_with_the_environment_settings(
    settings, artifacts, monkeypatch, sagemaker_emulator, tmp_path
):
    """`imgsim endpoint deploy`, with no local stack running: the settings of the environment."""
    for key, value in settings.to_env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("IMGSIM_LOCAL_DIR", str(tmp_path / "no-stack"))
    imgsim = CliRunner()
    deployed = imgsim.invoke(
        app,
        [
            "--json",
            "endpoint",
            "deploy",
            "--model-data-url",
            artifacts[COLOR],
            "--role-arn",
            "arn:aws:iam::123456789012:role/deployer-given",
            "--image-uri",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/custom:1",
        ],
    )
    assert deployed.exit_code == 0, deployed.output
    printed = json.loads(deployed.stdout)
    assert printed["endpoint_name"] == settings.embed_endpoint and printed["action"] == "created"
    sm = boto3.client("sagemaker", endpoint_url=sagemaker_emulator, region_name="us-east-1")
    model = sm.describe_model(ModelName=printed["config_name"])
    assert model["PrimaryContainer"]["Image"].endswith("/custom:1")
    assert _embed(settings)["model_id"] == COLOR
    no_role = imgsim.invoke(app, ["endpoint", "deploy", "--model-data-url", artifacts[COLOR]])
    assert no_role.exit_code == 2 and "--role-arn" in no_role.output
