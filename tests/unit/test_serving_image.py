"""The serving container: the image's version in one place, network isolation where the inputs
allow it, and one model-server worker per GPU (per instance on a CPU)."""

from __future__ import annotations

import pytest

from pipeline.aws_build.cfn_template import load_template
from pipeline.embedding.run import EmbeddingRun
from pipeline.embedding.serving_image import (
    ENDPOINT_ENVIRONMENT,
    SERVING_IMAGE,
    gpus,
    model_server_workers,
    workers_environment,
)
from pipeline.embedding.transform_config import transform_config
from pipeline.embedding.transform_params import transform_params
from pipeline.settings import Settings

EMBED_MODEL = load_template()["Resources"]["EmbedModel"]["Properties"]


def test_the_template_s_endpoint_model_is_isolated_and_runs_the_serving_image():
    assert EMBED_MODEL["EnableNetworkIsolation"] is True
    default_image = EMBED_MODEL["PrimaryContainer"]["Image"]["Fn::If"][1]["Fn::Sub"]
    assert default_image.endswith(f"/{SERVING_IMAGE.repository}:{SERVING_IMAGE.tag('cpu')}")
    env = EMBED_MODEL["PrimaryContainer"]["Environment"]
    assert env == {
        "SAGEMAKER_TS_MIN_WORKERS": "1",
        "SAGEMAKER_TS_MAX_WORKERS": "1",
        **ENDPOINT_ENVIRONMENT,
    }


def test_the_wheels_target_the_image_s_python_and_every_glibc_it_runs():
    assert SERVING_IMAGE.python_version == "3.12" and SERVING_IMAGE.tag("gpu") == "2.6-gpu-py312"
    platforms = SERVING_IMAGE.platforms
    assert platforms[0] == "manylinux_2_35_x86_64" and "manylinux_2_17_x86_64" in platforms
    assert "manylinux2014_x86_64" in platforms


@pytest.mark.parametrize(
    ("instance_type", "expected"),
    [
        ("ml.m5.xlarge", 0),
        ("ml.c5.9xlarge", 0),
        ("ml.g4dn.xlarge", 1),
        ("ml.g4dn.12xlarge", 4),
        ("ml.g5.2xlarge", 1),
        ("ml.g5.12xlarge", 4),
        ("ml.g5.48xlarge", 8),
        ("ml.g6e.24xlarge", 4),
        ("ml.p3.2xlarge", 1),
        ("ml.p3.8xlarge", 4),
        ("ml.p4d.24xlarge", 8),
    ],
)
def test_gpus_of_an_instance_type(instance_type, expected):
    assert gpus(instance_type) == expected
    assert model_server_workers(instance_type) == max(1, expected)


def test_both_worker_variables_are_set_so_the_toolkit_s_default_of_one_never_applies():
    assert workers_environment("ml.g5.12xlarge") == {
        "SAGEMAKER_TS_MIN_WORKERS": "4",
        "SAGEMAKER_TS_MAX_WORKERS": "4",
    }
    assert workers_environment("ml.m5.xlarge")["SAGEMAKER_TS_MAX_WORKERS"] == "1"
    with pytest.raises(ValueError, match="not a SageMaker instance type"):
        gpus("m5.xlarge")


CONFIGURED = Settings(serving_image_cpu="1.dkr/serve:cpu", serving_image_gpu="1.dkr/serve:gpu")


@pytest.mark.parametrize(
    ("instance_type", "workers"), [("ml.m5.xlarge", "1"), ("ml.g5.12xlarge", "4")]
)
def test_the_batch_transform_runs_one_worker_per_gpu(instance_type, workers):
    run = EmbeddingRun(CONFIGURED, "manual__2026-11-22T00:30:00+00:00")
    model = transform_config(run, "s3://b/m.tar.gz", "r", instance_type)["Model"]
    env = model["PrimaryContainer"]["Environment"]
    assert env["SAGEMAKER_TS_MIN_WORKERS"] == env["SAGEMAKER_TS_MAX_WORKERS"] == workers
    # the handler reads its images from S3: its container keeps the network
    assert "EnableNetworkIsolation" not in model
    overridden = transform_config(
        run, "s3://b/m.tar.gz", "r", instance_type, environment={"SAGEMAKER_TS_MAX_WORKERS": "2"}
    )["Model"]["PrimaryContainer"]["Environment"]
    assert overridden["SAGEMAKER_TS_MAX_WORKERS"] == "2"  # the run's model_environment wins


def test_the_dags_default_framework_version_is_the_serving_image_s():
    assert transform_params()["framework_version"].value == SERVING_IMAGE.framework_version
