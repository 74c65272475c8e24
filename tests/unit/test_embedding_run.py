"""Pure parts of the embedding run."""

import json
import subprocess
import sys

import pytest

from pipeline.embedding.embed_requests import messages_from_asset_events, requested_ids
from pipeline.embedding.run import EmbeddingRun
from pipeline.embedding.transform_config import serving_image_uri
from pipeline.embedding.transform_config import transform_config as build_config
from pipeline.settings import Settings
from pipeline.storage.run_stores import RunStores


def test_requested_ids_from_sqs_asset_events():
    extras = [
        {
            "from_trigger": True,
            "payload": {
                "status": "success",
                "message_batch": [
                    {
                        "MessageId": "1",
                        "Body": json.dumps({"image_id": "a", "s3_key": "uploads/a.jpg"}),
                    },
                    {"MessageId": "2", "Body": "not json"},
                    {"MessageId": "3", "Body": json.dumps({"image_id": "b", "priority": True})},
                ],
            },
        },
        {
            "from_trigger": True,
            "payload": {"message_batch": [{"Body": json.dumps({"image_id": "a"})}]},
        },
        {},
    ]
    assert requested_ids(messages_from_asset_events(extras)) == ["a", "b"]


def _run(settings: Settings, run_id: str) -> EmbeddingRun:
    return EmbeddingRun(
        settings,
        run_id,
        s3=object(),
        stores=RunStores(object(), object(), object(), object()),  # type: ignore[arg-type]
    )


def test_transform_config_is_deterministic_per_run_and_valid_for_sagemaker():
    run = _run(Settings(bucket="bkt"), "manual__2026-11-22T00:30:00.123456+00:00")
    config = build_config(run, "s3://bkt/models/m.tar.gz", "arn:aws:iam::1:role/r")
    again = build_config(run, "s3://bkt/models/m.tar.gz", "arn:aws:iam::1:role/r")
    assert config == again
    name = config["Transform"]["TransformJobName"]
    assert len(name) <= 63 and all(c.isalnum() or c == "-" for c in name)
    assert config["Transform"]["ModelName"] == config["Model"]["ModelName"] == name
    source = config["Transform"]["TransformInput"]["DataSource"]["S3DataSource"]
    assert source["S3Uri"] == "s3://bkt/embed-runs/manual__2026-11-22T00_30_00.123456_00_00/input/"
    other = _run(Settings(bucket="bkt"), "manual__2026-11-22T00:30:00.123457+00:00")
    assert build_config(other, "s3://x/m", "r")["Transform"]["TransformJobName"] != name


def test_the_serving_image_is_the_sagemaker_sdk_s_for_the_run_s_region():
    run = _run(Settings(region="eu-west-1"), "scheduled__2026-11-22T00:15:00+00:00")
    container = build_config(run, "s3://b/m.tar.gz", "r")["Model"]["PrimaryContainer"]
    assert container["Image"] == (
        "763104351884.dkr.ecr.eu-west-1.amazonaws.com/pytorch-inference:2.6-cpu-py312"
    )
    # another partition: its own registry account and host name; a GPU instance: the gpu tag
    gpu = build_config(_run(Settings(region="cn-north-1"), "r1"), "s3://b/m", "r", "ml.g5.xlarge")
    assert gpu["Model"]["PrimaryContainer"]["Image"] == (
        "727897471807.dkr.ecr.cn-north-1.amazonaws.com.cn/pytorch-inference:2.6-gpu-py312"
    )
    # an image given explicitly is used as is
    mine = "111122223333.dkr.ecr.eu-west-1.amazonaws.com/my-clip:1"
    explicit = build_config(run, "s3://b/m", "r", image_uri=mine)
    assert explicit["Model"]["PrimaryContainer"]["Image"] == mine


def test_a_framework_version_the_sdk_does_not_know_is_refused():
    with pytest.raises(ValueError, match=r"Unsupported pytorch version: 1\.99"):
        serving_image_uri("us-east-1", "ml.m5.xlarge", "1.99")


def test_the_lambda_handlers_do_not_import_the_sagemaker_sdk():
    """The SDK is for DAG tasks: the Lambda package and its layer do not ship it."""
    code = (
        "import sys, lambdas.api.handler, lambdas.ingest.handler;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'sagemaker'))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip() == "[]"
