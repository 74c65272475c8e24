"""The serving image of a batch transform: picked by the instance type at run time from the
settings' CPU and GPU images (what MWAA's workers have), looked up by sagemaker-core only where
the settings name none; a task that can do neither says what to set."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pipeline.embedding.run import EmbeddingRun
from pipeline.embedding.transform_config import (
    FRAMEWORK_VERSION,
    configured_image_uri,
    processor,
    serving_image_uri,
    serving_image_uris,
    transform_config,
)
from pipeline.settings import Settings

CONFIGURED = Settings(
    region="eu-west-1", serving_image_cpu="1.dkr/serve:cpu", serving_image_gpu="1.dkr/serve:gpu"
)


@pytest.mark.parametrize(
    ("instance_type", "kind"),
    [
        ("ml.m5.xlarge", "cpu"),
        ("ml.c7i.large", "cpu"),
        ("ml.g5.xlarge", "gpu"),
        ("ml.g4dn.2xlarge", "gpu"),
        ("ml.p4d.24xlarge", "gpu"),
    ],
)
def test_the_processor_kind_is_sagemaker_cores_and_picks_the_configured_image(instance_type, kind):
    assert processor(instance_type) == kind
    assert serving_image_uri("eu-west-1", instance_type).split(":")[-1].startswith(f"2.6-{kind}")
    assert configured_image_uri(CONFIGURED, instance_type) == f"1.dkr/serve:{kind}"
    run = EmbeddingRun(CONFIGURED, "manual__2026-11-22T00:30:00+00:00")
    config = transform_config(run, "s3://b/m.tar.gz", "r", instance_type)
    assert config["Model"]["PrimaryContainer"]["Image"] == f"1.dkr/serve:{kind}"


def test_bad_instance_types_are_refused_with_what_to_do():
    with pytest.raises(ValueError, match=r"not a SageMaker instance type .*ml\.m5\.xlarge"):
        processor("m5.xlarge")
    with pytest.raises(ValueError, match="Neuron image; pass it as the image_uri param"):
        processor("ml.inf2.xlarge")


def test_without_configured_images_sagemaker_core_looks_them_up():
    assert serving_image_uris("eu-west-1") == {
        "cpu": "763104351884.dkr.ecr.eu-west-1.amazonaws.com/pytorch-inference:2.6-cpu-py312",
        "gpu": "763104351884.dkr.ecr.eu-west-1.amazonaws.com/pytorch-inference:2.6-gpu-py312",
    }
    assert (
        configured_image_uri(Settings(region="eu-west-1"), "ml.g5.xlarge")
        == (serving_image_uris("eu-west-1")["gpu"])
    )
    # another PyTorch version than the configured images': looked up, not the configured one
    other = configured_image_uri(CONFIGURED, "ml.m5.xlarge", "2.5")
    assert other.endswith(":2.5-cpu-py311") and FRAMEWORK_VERSION != "2.5"


def test_where_sagemaker_core_is_missing_an_unconfigured_image_names_its_setting():
    """As on MWAA: sagemaker-core is not installed (here: made unimportable)."""
    code = """
import sys
sys.modules["sagemaker"] = None  # import sagemaker... raises ImportError
from pipeline.embedding.transform_config import configured_image_uri
from pipeline.settings import Settings
print(configured_image_uri(Settings(serving_image_gpu="1.dkr/serve:gpu"), "ml.g5.xlarge"))
try:
    configured_image_uri(Settings(serving_image_gpu="1.dkr/serve:gpu"), "ml.m5.xlarge")
except ValueError as error:
    print(error)
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    configured, refused = result.stdout.strip().splitlines()
    assert configured == "1.dkr/serve:gpu"
    assert "no CPU serving image of PyTorch 2.6 is configured: set IMGSIM_SERVING_IMAGE_CPU" in (
        refused
    )
