"""EmbeddingRun against moto and the SageMaker emulator, without Airflow: inputs split into
several files (batch transform spreads files over instances), outputs joined back in order."""

from __future__ import annotations

import time

import boto3

from lambdas.ingest.handler import make_handler
from pipeline import aws
from pipeline.embedding.run import EmbeddingRun
from pipeline.embedding.transform_config import transform_config
from pipeline.ingest.ingestor import Ingestor
from pipeline.local.event_pump import EventPump
from pipeline.storage.images_table import ImageStore
from tests.helpers import gradient_jpeg


def test_a_run_split_into_parts_embeds_every_image(stack, sagemaker_emulator, tiny_clip_artifact):
    settings = stack.settings
    s3 = aws.client(settings, "s3")
    for i in range(5):
        s3.put_object(
            Bucket=settings.bucket,
            Key=f"uploads/m{i}.jpg",
            Body=gradient_jpeg((60 + i, 60)),
            Metadata={"prompt": "moth"},
        )
    EventPump(settings, make_handler(Ingestor.from_settings(settings))).drain()
    s3.upload_file(str(tiny_clip_artifact), settings.bucket, "models/tiny.tar.gz")

    run = EmbeddingRun(settings, "run-parts")
    summary = run.gather([], pending_before="9999", run_at="2026-11-22T00:00:00.000Z", part_lines=2)
    assert (summary["count"], summary["parts"]) == (5, 3)
    config = transform_config(
        run, f"s3://{settings.bucket}/models/tiny.tar.gz", "arn:aws:iam::123456789012:role/sm"
    )
    sm = boto3.client("sagemaker", endpoint_url=sagemaker_emulator, region_name="us-east-1")
    sm.create_model(**config["Model"])
    sm.create_transform_job(**config["Transform"])
    name = config["Transform"]["TransformJobName"]
    deadline = time.monotonic() + 120
    while (job := sm.describe_transform_job(TransformJobName=name))[
        "TransformJobStatus"
    ] == "InProgress":
        assert time.monotonic() < deadline
        time.sleep(0.3)
    assert job["TransformJobStatus"] == "Completed", job.get("FailureReason")

    result = run.commit()
    assert (result["embedded"], result["failed"]) == (5, 0)
    assert {ImageStore(settings).get(f"m{i}")["status"] for i in range(5)} == {"embedded"}
