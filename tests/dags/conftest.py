"""Fixtures for DAG runs: the AWS connection pointing each service at the local stack, exactly
as an operator would set it (the migrated Airflow metadata DB, `airflow_db`, is session-wide in
tests/conftest.py: DAG runs under enforced IAM in tests/integration use it too)."""

from __future__ import annotations

import json
import os

import pytest

from pipeline import aws
from pipeline.local.config import LOCAL_SAGEMAKER_ROLE
from tests.helpers import drain_messages


@pytest.fixture
def airflow_stack(
    stack, sagemaker_emulator, moto_server, airflow_db, monkeypatch, tiny_clip_artifact
):
    """The stack's names and embed queue URL in the environment (import DAG modules after
    this: they read it at parse time), the AWS connection in AIRFLOW_CONN_AWS_DEFAULT, and the
    tiny CLIP artifact in the bucket. Returns (settings, model_data_url)."""
    settings = stack.settings
    for key, value in settings.to_env().items():
        if not key.startswith("AWS_ENDPOINT_URL"):
            monkeypatch.setenv(key, value)
    queue_url = aws.client(settings, "sqs").get_queue_url(QueueName=settings.embed_queue)
    monkeypatch.setenv("IMGSIM_EMBED_QUEUE_URL", queue_url["QueueUrl"])
    monkeypatch.setenv("IMGSIM_TRANSFORM_POLL_SECONDS", "1")
    monkeypatch.setenv("IMGSIM_SAGEMAKER_ROLE_ARN", LOCAL_SAGEMAKER_ROLE)
    services = {s: {"endpoint_url": moto_server.url} for s in ("s3", "sqs", "dynamodb")}
    services.update(
        {s: {"endpoint_url": sagemaker_emulator} for s in ("sagemaker", "sagemaker-runtime")}
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_AWS_DEFAULT",
        json.dumps(
            {
                "conn_type": "aws",
                "login": "testing",
                "password": "testing",
                "extra": {"region_name": settings.region, "service_config": services},
            }
        ),
    )
    key = "models/tiny-clip/model.tar.gz"
    aws.client(settings, "s3").upload_file(str(tiny_clip_artifact), settings.bucket, key)
    yield settings, f"s3://{settings.bucket}/{key}"
    drain_messages(settings, settings.embed_queue)
    os.environ.pop("AIRFLOW_CONN_AWS_DEFAULT", None)
