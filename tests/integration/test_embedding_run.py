"""EmbeddingRun against moto and the SageMaker emulator, without Airflow: inputs split into
several files (batch transform spreads files over instances), outputs joined back in order."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError

from lambdas.ingest.handler import make_handler
from pipeline import aws
from pipeline.embedding.compaction import Compactor
from pipeline.embedding.run import EmbeddingRun
from pipeline.ingest.ingestor import Ingestor
from pipeline.local.event_pump import EventPump
from pipeline.lookup.similarity import SimilarityService
from pipeline.storage.images_table import ImageStore
from pipeline.storage.manifests_table import ManifestStore
from pipeline.storage.shards import ShardStore
from tests.helpers import gradient_jpeg, transform


def _recorded(settings, ids, prompt, width, artifact, height=60) -> str:
    """Upload one gradient JPEG per id (widths from `width` up) under `prompt`, ingest them,
    and put the model artifact in the bucket; returns its URI."""
    s3 = aws.client(settings, "s3")
    for i, image_id in enumerate(ids):
        s3.put_object(
            Bucket=settings.bucket,
            Key=f"uploads/{image_id}.jpg",
            Body=gradient_jpeg((width + i, height)),
            Metadata={"prompt": prompt},
        )
    EventPump(settings, make_handler(Ingestor.from_settings(settings))).drain()
    s3.upload_file(str(artifact), settings.bucket, "models/tiny.tar.gz")
    return f"s3://{settings.bucket}/models/tiny.tar.gz"


def test_a_run_split_into_parts_embeds_every_image(stack, sagemaker_emulator, tiny_clip_artifact):
    settings = stack.settings
    model_uri = _recorded(settings, [f"m{i}" for i in range(5)], "moth", 60, tiny_clip_artifact)

    run = EmbeddingRun(settings, "run-parts")
    summary = run.gather([], pending_before="9999", run_at="2026-11-22T00:00:00.000Z", part_lines=2)
    assert (summary["count"], summary["parts"]) == (5, 3)
    # the DAGs' model_environment param reaches the serving container
    name = transform(settings, sagemaker_emulator, model_uri, run, {"IMGSIM_BATCH_SIZE": "3"})
    sm = boto3.client("sagemaker", endpoint_url=sagemaker_emulator, region_name="us-east-1")
    model = sm.describe_model(ModelName=name)
    assert model["PrimaryContainer"]["Environment"]["IMGSIM_BATCH_SIZE"] == "3"

    result = run.commit()
    assert (result["embedded"], result["failed"]) == (5, 0)
    assert {ImageStore(settings).get(f"m{i}")["status"] for i in range(5)} == {"embedded"}


def _without_table(ddb, table: str):
    """Delete a table, returning what recreates it as it was (a real failure for the writes
    that follow, not a patched method)."""
    described = ddb.describe_table(TableName=table)["Table"]
    ddb.delete_table(TableName=table)
    spec = {
        "TableName": table,
        "KeySchema": described["KeySchema"],
        "AttributeDefinitions": described["AttributeDefinitions"],
        "BillingMode": "PAY_PER_REQUEST",
    }
    if described.get("GlobalSecondaryIndexes"):
        spec["GlobalSecondaryIndexes"] = [
            {k: g[k] for k in ("IndexName", "KeySchema", "Projection")}
            for g in described["GlobalSecondaryIndexes"]
        ]
    return lambda: ddb.create_table(**spec)


def test_a_commit_failed_after_its_manifest_then_a_new_run_leaves_one_row_per_image(
    stack, sagemaker_emulator, tiny_clip_artifact
):
    """The edge between the manifest write and the Images status: the failed run's shard stays
    listed, the images stay pending, the next run embeds them again into a second shard.
    Lookups see each image once (a later shard's row wins) and compaction keeps one row."""
    settings = stack.settings
    ddb = aws.client(settings, "dynamodb")
    ids = [f"edge{i}" for i in range(3)]
    model_uri = _recorded(settings, ids, "a commit edge", 70, tiny_clip_artifact, height=50)

    failed = EmbeddingRun(settings, "run-edge-1")
    assert failed.gather(ids, pending_before="", run_at="2026-11-22T01:00:00.000Z")["count"] == 3
    transform(settings, sagemaker_emulator, model_uri, failed)
    restore = _without_table(ddb, settings.embeddings_table)  # the Embeddings write fails
    try:
        with pytest.raises(ClientError, match="ResourceNotFoundException"):
            failed.commit()
    finally:
        restore()
    model_id = "clip-tiny-random-init-seed0"
    manifests, images = ManifestStore(settings), ImageStore(settings)
    assert len(manifests.get("a commit edge", model_id).shards) == 1  # listed before the failure
    assert {images.get(i)["status"] for i in ids} == {"pending"}

    again = EmbeddingRun(settings, "run-edge-2")
    assert again.gather(ids, pending_before="", run_at="2026-11-22T01:05:00.000Z")["count"] == 3
    transform(settings, sagemaker_emulator, model_uri, again)
    assert again.commit()["embedded"] == 3
    assert {images.get(i)["status"] for i in ids} == {"embedded"}
    assert len(manifests.get("a commit edge", model_id).shards) == 2  # the same rows twice

    similarity = SimilarityService.from_settings(settings)
    page = similarity.lookup("edge0", "a commit edge", k=10)
    assert sorted(r["image_id"] for r in page["results"]) == ["edge1", "edge2"]
    assert page["candidates"] == 2  # each image once, the query left out

    Compactor(settings).compact("a commit edge", model_id, "compact-edge", max_rows=1000)
    manifest = manifests.get("a commit edge", model_id)
    assert (len(manifest.shards), manifest.rows) == (1, 3)
    rows = ShardStore(settings).read(manifest.shards[0]).column("image_id").to_pylist()
    assert rows == ids
