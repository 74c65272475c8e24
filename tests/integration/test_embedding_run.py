"""EmbeddingRun against moto and the SageMaker emulator, without Airflow: inputs split into
several files (batch transform spreads files over instances), outputs joined back in order."""

from __future__ import annotations

from datetime import UTC, datetime

import boto3
import numpy as np
import pytest
from botocore.exceptions import ClientError

from lambdas.ingest.handler import make_handler
from pipeline import aws
from pipeline.commit.writer import Committed
from pipeline.embedding.compaction import Compactor
from pipeline.embedding.run import EmbeddingRun
from pipeline.embedding.superseded import SupersededRows
from pipeline.ingest.ingestor import Ingestor
from pipeline.local.event_pump import EventPump
from pipeline.lookup.similarity import SimilarityService
from pipeline.storage.embeddings_table import EmbeddingStore
from pipeline.storage.images_table import ImageStore
from pipeline.storage.manifests_table import ManifestStore
from pipeline.storage.run_stores import RunStores
from pipeline.storage.shards import ShardRow, ShardStore, rows_table
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


def test_a_run_committing_a_replaced_version_after_its_successor_leaves_the_current_one(
    stack, sagemaker_emulator, tiny_clip_artifact
):
    """A slow run embeds r1, r1 is replaced, a fast run embeds the new version and commits
    first; the slow one commits last. Its row of the old version comes later in the manifest
    and its Embeddings write replaced the fast one's: lookups never show the old vector, and
    r1 goes back to pending until a run embeds the current version again. When the current
    version's vector is still stored (the writes landed the other way), its row is listed
    again instead."""
    settings = stack.settings
    prompt, model_id = "out of order", "clip-tiny-random-init-seed0"
    ids = ["r0", "r1", "r2"]
    model_uri = _recorded(settings, ids, prompt, 90, tiny_clip_artifact, height=40)
    images, embeddings = ImageStore(settings), EmbeddingStore(settings)
    similarity = SimilarityService.from_settings(settings)

    def score_of_r1() -> float | None:
        page = similarity.lookup("r0", prompt, k=10)
        return next((r["similarity"] for r in page["results"] if r["image_id"] == "r1"), None)

    def expected_score() -> float:
        query, current = embeddings.get("r0")["embedding"], embeddings.get("r1")["embedding"]
        assert embeddings.get("r1")["source_etag"] == images.get("r1")["etag"]
        return float(np.dot(query, current))

    first = EmbeddingRun(settings, "run-first")
    assert first.gather(["r0", "r2"], pending_before="", run_at="2026-11-22T01:59:00.000Z")
    transform(settings, sagemaker_emulator, model_uri, first)
    assert first.commit()["embedded"] == 2
    slow = EmbeddingRun(settings, "run-slow")
    assert slow.gather(["r1"], pending_before="", run_at="2026-11-22T02:00:00.000Z")["count"] == 1
    transform(settings, sagemaker_emulator, model_uri, slow)
    old_etag = images.get("r1")["etag"]
    _recorded(settings, ["r1"], prompt, 30, tiny_clip_artifact, height=90)  # replaced
    fast = EmbeddingRun(settings, "run-fast")
    assert fast.gather(["r1"], pending_before="", run_at="2026-11-22T02:01:00.000Z")["count"] == 1
    transform(settings, sagemaker_emulator, model_uri, fast)
    assert fast.commit()["embedded"] == 1
    assert score_of_r1() == pytest.approx(expected_score(), abs=1e-5)

    summary = slow.commit()
    assert (summary["embedded"], summary["reopened"], summary["relisted"]) == (1, 1, 0)
    assert (images.get("r1")["status"], images.get("r1")["embed_attempts"]) == ("pending", 0)
    stale = embeddings.get("r1")
    assert stale["source_etag"] == old_etag  # the slow commit's write replaced the fast one's
    assert score_of_r1() is None  # neither vector is shown: the old one is not current

    # the next run embeds the current version again (the stale item is not taken for it)
    again = EmbeddingRun(settings, "run-again")
    assert again.gather(["r1"], pending_before="", run_at="2026-11-22T02:05:00.000Z")["count"] == 1
    transform(settings, sagemaker_emulator, model_uri, again)
    assert again.commit()["embedded"] == 1
    assert score_of_r1() == pytest.approx(expected_score(), abs=1e-5)

    # the other order of the Embeddings writes: a stale row listed last, the current item kept
    shards, manifests = ShardStore(settings), ManifestStore(settings)
    row = ShardRow("r1", stale["embedding"], datetime.now(UTC), "uploads/r1.jpg", old_etag)
    shards.write("embeddings/late-stale.parquet", rows_table([row], 32, model_id, prompt))
    manifests.update(
        prompt, model_id, lambda m: m.with_shard("embeddings/late-stale.parquet", 1, ["r1"])
    )
    assert score_of_r1() is None
    restored = SupersededRows(RunStores(images, embeddings, manifests, shards))
    refused = Committed("r1", old_etag, prompt)
    assert restored.restore([refused], model_id, "run-slow") == {"relisted": 1, "reopened": 0}
    assert score_of_r1() == pytest.approx(expected_score(), abs=1e-5)

    # a late run of the old version under another prompt (or none): its row stands in front
    # of nothing here, but its Embeddings write replaced the current vector: back to pending
    embeddings.put("r1", model_id, stale["embedding"], None, old_etag, "t")
    elsewhere = Committed("r1", old_etag, "another prompt")
    assert restored.restore([elsewhere], model_id, "run-late") == {"relisted": 0, "reopened": 1}
    assert images.get("r1")["status"] == "pending"
