"""Deleting an image everywhere, on moto: S3 ObjectRemoved events (in any order, replayed, late)
and DELETE /images/{id} leave no record (a deletion marker), no vector, no lookup result, and
after compaction no shard row; a new upload to the same key is a new version."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace

import numpy as np
import requests

from lambdas.api.handler import make_handler as make_api_handler
from lambdas.ingest.handler import make_handler
from pipeline import aws
from pipeline.deletion.deleter import Deleter
from pipeline.embedding.compaction import Compactor
from pipeline.ingest.ingestor import Ingestor
from pipeline.local.api_gateway import LocalApi
from pipeline.local.event_pump import EventPump
from pipeline.settings import Settings
from pipeline.storage.active_models import ActiveModels
from pipeline.storage.embeddings_table import EmbeddingStore
from pipeline.storage.images_table import ImageStore
from pipeline.storage.manifests_table import ManifestStore
from pipeline.storage.shards import ShardStore
from pipeline.upgrade.backfill import Backfill
from sagemaker_jobs.build_model import build
from tests.events import AWS_PUT, MOTO_PUT, batch, s3_put_record
from tests.helpers import (
    commit_shard,
    drain_messages,
    embedded_image,
    gradient_jpeg,
    run_embedding,
    transform,
)
from tests.integration.deletion_world import (
    AT,
    CTX,
    MODEL,
    PROMPT,
    World,
    shard_ids,
    upload,
    world,
)

__all__ = ["world"]  # the fixture: four uploads of PROMPT embedded in two shards


def _assert_gone(world: World, image_id: str) -> None:
    settings = world.settings
    record = ImageStore(settings).get(image_id)
    assert record["status"] == "deleted" and record["deleted_prompt"] == PROMPT
    assert not {"prompt", "sha256", "width", "embedding_model_id"} & set(record)
    assert EmbeddingStore(settings).get(image_id) is None
    assert image_id in ManifestStore(settings).get(PROMPT, MODEL).tombstones
    assert requests.get(f"{world.url}/images/{image_id}", timeout=10).json()["error"] == {
        "code": "image_deleted",
        "message": f"image {image_id} was deleted",
    }
    assert requests.get(f"{world.url}/embeddings/{image_id}", timeout=10).status_code == 404
    as_query = requests.get(
        f"{world.url}/similarity", params={"image_id": image_id, "prompt": PROMPT}, timeout=10
    )
    assert (as_query.status_code, as_query.json()["error"]["code"]) == (404, "image_not_found")
    others = [i for i in "abcd" if i != image_id and ImageStore(settings).get(i)]
    for other in others:
        if ImageStore(settings).get(other)["status"] == "embedded":
            assert image_id not in world.similar(other)


def test_a_removed_object_leaves_every_place_and_compaction_drops_its_row(world):
    settings = world.settings
    assert "b" in world.similar("a")
    aws.client(settings, "s3").delete_object(Bucket=settings.bucket, Key="uploads/b.jpg")
    assert world.pump.drain() == 1
    _assert_gone(world, "b")
    assert world.similar("a") == [i for i in world.similar("a") if i in {"c", "d"}]
    assert sorted(world.similar("a")) == ["c", "d"]
    assert "b" in shard_ids(settings)  # hidden by its tombstone until compaction
    # the other images are untouched
    for other in "acd":
        assert ImageStore(settings).get(other)["status"] == "embedded"
        assert EmbeddingStore(settings).get(other) is not None

    compactor = Compactor(settings)
    assert compactor.candidates(max_rows=1) == [{"prompt": PROMPT, "model_id": MODEL}]
    result = compactor.compact(PROMPT, MODEL, "compact-1", max_rows=1)  # every shard is "big"
    # only the shard holding b's row is rewritten (without it); the other is left alone
    assert (result["compacted"], result["rows"], result["dropped"]) == (1, 1, 1)
    assert shard_ids(settings) == {"a", "c", "d"}
    manifest = ManifestStore(settings).get(PROMPT, MODEL)
    assert manifest.tombstones == frozenset() and len(manifest.shards) == 2
    assert sorted(world.similar("a")) == ["c", "d"]
    assert compactor.candidates(max_rows=1) == []


def test_a_replayed_removal_changes_nothing(world):
    settings = world.settings
    aws.client(settings, "s3").delete_object(Bucket=settings.bucket, Key="uploads/c.jpg")
    [message] = _messages(settings)
    handler = make_handler(Ingestor.from_settings(settings))
    assert handler(batch(message), CTX) == {"batchItemFailures": []}
    marker = ImageStore(settings).get("c")
    manifest = ManifestStore(settings).get(PROMPT, MODEL)
    for _ in range(2):
        assert handler(batch(message), CTX) == {"batchItemFailures": []}
    assert ImageStore(settings).get("c") == marker
    assert ManifestStore(settings).get(PROMPT, MODEL) == manifest
    _assert_gone(world, "c")


def _messages(settings: Settings) -> list[dict]:
    """The ingest queue's messages as SQS records of a Lambda event (consumed)."""
    return [
        {
            "messageId": str(uuid.uuid4()),
            "receiptHandle": "x",
            "body": json.dumps(body),
            "attributes": {},
            "messageAttributes": {},
            "md5OfBody": "x",
            "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:ingest",
            "awsRegion": "us-east-1",
        }
        for body in drain_messages(settings, settings.ingest_queue)
    ]


def _removal(put_record: dict, sequencer: str | None) -> dict:
    """The ObjectRemoved:Delete record of the key a put record announces (S3 sends no ETag
    and no size for a removal)."""
    body = json.loads(put_record["body"])
    s3_record = body["Records"][0]
    s3_record["eventName"] = "ObjectRemoved:Delete"
    obj = s3_record["s3"]["object"]
    for field in ("eTag", "size", "sequencer"):
        obj.pop(field, None)
    if sequencer:
        obj["sequencer"] = sequencer
    return {**put_record, "messageId": str(uuid.uuid4()), "body": json.dumps(body)}


def _sequenced(put_record: dict, sequencer: str) -> dict:
    body = json.loads(put_record["body"])
    body["Records"][0]["s3"]["object"]["sequencer"] = sequencer
    return {**put_record, "messageId": str(uuid.uuid4()), "body": json.dumps(body)}


def test_sequencers_keep_a_late_creation_from_resurrecting_a_deleted_version(stack):
    """AWS-shaped events: put (seq ...A1), delete (...B2), the same bytes put again (...C3).
    The first creation event delivered again after the deletion finds an object with its very
    ETag (the re-upload): only the sequencer tells that it is older than the deletion."""
    settings = stack.settings
    s3 = aws.client(settings, "s3")
    handler = make_handler(Ingestor.from_settings(settings))
    data = gradient_jpeg()
    key = "uploads/r.jpg"
    etag = s3.put_object(Bucket=settings.bucket, Key=key, Body=data)["ETag"]
    created = s3_put_record(settings.bucket, key, etag, len(data), template=AWS_PUT)
    first = _sequenced(created, "00695A1")
    handler(batch(first), CTX)
    assert ImageStore(settings).get("r")["sequencer"].startswith("00695A1")

    s3.delete_object(Bucket=settings.bucket, Key=key)
    removed = _removal(created, "00695B2")
    handler(batch(removed), CTX)
    marker = ImageStore(settings).get("r")
    assert marker["status"] == "deleted" and marker["deleted_sequencer"].startswith("00695B2")

    assert s3.put_object(Bucket=settings.bucket, Key=key, Body=data)["ETag"] == etag
    handler(batch(_sequenced(created, "00695A1")), CTX)  # late: older than the deletion
    assert ImageStore(settings).get("r") == marker
    handler(batch(_removal(created, "00695B2")), CTX)  # replayed: the key holds an object
    assert ImageStore(settings).get("r") == marker

    drain_messages(settings, settings.embed_queue)
    handler(batch(_sequenced(created, "00695C3")), CTX)  # the re-upload: a new version
    record = ImageStore(settings).get("r")
    assert record["status"] == "pending" and record["sequencer"].startswith("00695C3")
    assert [m["image_id"] for m in drain_messages(settings, settings.embed_queue)] == ["r"]


def test_a_removal_before_its_creation_leaves_a_marker_and_a_new_upload_is_a_new_version(stack):
    """moto-shaped events (no sequencer): S3 state decides. The removal is handled first; the
    creation event that arrives after it finds no object and changes nothing."""
    settings = stack.settings
    s3 = aws.client(settings, "s3")
    handler = make_handler(Ingestor.from_settings(settings))
    data, key = gradient_jpeg(), "uploads/o.jpg"
    etag = s3.put_object(Bucket=settings.bucket, Key=key, Body=data, Metadata={"prompt": "x"})
    created = s3_put_record(settings.bucket, key, etag["ETag"], len(data), template=MOTO_PUT)
    s3.delete_object(Bucket=settings.bucket, Key=key)
    drain_messages(settings, settings.ingest_queue)

    assert handler(batch(_removal(created, None)), CTX) == {"batchItemFailures": []}
    marker = ImageStore(settings).get("o")
    assert marker["status"] == "deleted" and marker["s3_key"] == key
    assert handler(batch(created), CTX) == {"batchItemFailures": []}
    assert ImageStore(settings).get("o") == marker
    assert drain_messages(settings, settings.embed_queue) == []

    s3.put_object(Bucket=settings.bucket, Key=key, Body=gradient_jpeg((90, 40)))
    EventPump(settings, handler).drain()
    record = ImageStore(settings).get("o")
    assert record["status"] == "pending" and (record["width"], record["height"]) == (90, 40)
    assert [m["image_id"] for m in drain_messages(settings, settings.embed_queue)] == ["o"]


def test_delete_route_removes_the_object_then_everything_else(world):
    settings = world.settings
    s3 = aws.client(settings, "s3")
    answer = requests.delete(f"{world.url}/images/b", timeout=10)
    assert (answer.status_code, answer.json()) == (200, {"image_id": "b", "status": "deleted"})
    assert s3.list_objects_v2(Bucket=settings.bucket, Prefix="uploads/b.jpg")["KeyCount"] == 0
    _assert_gone(world, "b")
    marker = ImageStore(settings).get("b")
    again = requests.delete(f"{world.url}/images/b", timeout=10)
    assert (again.status_code, again.json()) == (200, {"image_id": "b", "status": "deleted"})
    assert world.pump.drain() == 1  # the removal event of the route's DeleteObject
    assert ImageStore(settings).get("b") == marker

    unknown = requests.delete(f"{world.url}/images/nope", timeout=10)
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "image_not_found")
    invalid = requests.delete(f"{world.url}/images/-bad", timeout=10)
    assert (invalid.status_code, invalid.json()["error"]["code"]) == (400, "invalid_image_id")
    assert sorted(world.similar("a")) == ["c", "d"]
    assert {ImageStore(settings).get(i)["status"] for i in "acd"} == {"embedded"}


def test_a_delete_during_an_embedding_run_is_not_undone_by_its_commit(
    stack, sagemaker_emulator, tiny_clip_artifact
):
    settings = stack.settings
    upload(settings, ["m0", "m1", "m2"])
    pump = EventPump(settings, make_handler(Ingestor.from_settings(settings)))
    pump.drain()
    s3 = aws.client(settings, "s3")
    s3.upload_file(str(tiny_clip_artifact), settings.bucket, "models/tiny.tar.gz")

    def delete_m1() -> None:  # the object goes while the transform job runs
        s3.delete_object(Bucket=settings.bucket, Key="uploads/m1.jpg")
        pump.drain()

    summary = run_embedding(
        settings,
        sagemaker_emulator,
        f"s3://{settings.bucket}/models/tiny.tar.gz",
        f"run-{uuid.uuid4().hex[:8]}",
        before_commit=delete_m1,
    )
    assert (summary["embedded"], summary["deleted_during_run"]) == (3, 1)
    images = ImageStore(settings)
    assert images.get("m1")["status"] == "deleted"
    assert {images.get(i)["status"] for i in ("m0", "m2")} == {"embedded"}
    assert EmbeddingStore(settings).get("m1") is None
    model_id = images.get("m0")["embedding_model_id"]
    manifest = ManifestStore(settings).get(PROMPT, model_id)
    assert manifest.tombstones == frozenset({"m1"})

    api = LocalApi(make_api_handler(Ingestor.from_settings(settings))).start()
    try:
        answer = requests.get(
            f"{api.url}/similarity", params={"image_id": "m0", "prompt": PROMPT}, timeout=10
        )
    finally:
        api.stop()
    assert [r["image_id"] for r in answer.json()["results"]] == ["m2"]
    result = Compactor(settings).compact(PROMPT, model_id, "compact-1", max_rows=100)
    assert (result["rows"], result["dropped"]) == (2, 1)


def test_a_delete_in_a_prompt_with_an_active_model_pointer_settles(world):
    """The pointer `(prompt, "@active")` shares the prompt's partition with its manifests: a
    deletion tombstones the manifests and leaves the pointer alone (it used to retry a write
    to the pointer until ConcurrentUpdate: a 500 here, the removal event to the DLQ)."""
    settings = world.settings
    active = ActiveModels(settings)
    assert active.pin(PROMPT, MODEL, AT) == MODEL  # as a reembed run's plan leaves it
    answer = requests.delete(f"{world.url}/images/b", timeout=10)
    assert (answer.status_code, answer.json()) == (200, {"image_id": "b", "status": "deleted"})
    _assert_gone(world, "b")
    aws.client(settings, "s3").delete_object(Bucket=settings.bucket, Key="uploads/c.jpg")
    assert world.pump.drain() == 2  # the route's removal event, and c's
    _assert_gone(world, "c")
    assert [m.model_id for m in ManifestStore(settings).of_prompt(PROMPT)] == [MODEL]
    assert active.get(PROMPT) == MODEL and active.models(PROMPT) == {MODEL: 4}
    compactor = Compactor(settings)
    assert compactor.candidates(max_rows=1) == [{"prompt": PROMPT, "model_id": MODEL}]
    assert compactor.compact(PROMPT, MODEL, "compact-1", max_rows=1)["dropped"] == 2
    assert sorted(world.similar("a")) == ["d"]


def test_an_image_deleted_then_uploaded_again_under_its_key_is_found_once_embedded(world):
    """The re-upload gets the same image id: its embedding lists it again (the id leaves the
    tombstones), so lookups return it and compaction keeps its new row, not the old one."""
    settings = world.settings
    s3 = aws.client(settings, "s3")
    s3.delete_object(Bucket=settings.bucket, Key="uploads/b.jpg")
    assert world.pump.drain() == 1
    _assert_gone(world, "b")
    etag = s3.put_object(
        Bucket=settings.bucket,
        Key="uploads/b.jpg",
        Body=gradient_jpeg((90, 40)),
        Metadata={"prompt": PROMPT},
    )["ETag"].strip('"')
    assert world.pump.drain() == 1
    assert ImageStore(settings).get("b")["status"] == "pending"
    assert "b" not in world.similar("a")

    vector = np.linspace(-1, 1, 8).astype(np.float32)
    vector /= np.linalg.norm(vector)
    key = commit_shard(settings, PROMPT, MODEL, "run-again", {"b": vector}, set(), {"b": etag})
    EmbeddingStore(settings).put("b", MODEL, vector, key, etag, "2026-11-22T00:01:00Z")
    outcome = {"status": "embedded", "embedding_model_id": MODEL}
    assert ImageStore(settings).set_outcome("b", etag, outcome)
    assert "b" not in ManifestStore(settings).get(PROMPT, MODEL).tombstones
    assert "b" in world.similar("a")

    result = Compactor(settings).compact(PROMPT, MODEL, "compact-1", max_rows=100)
    assert (result["compacted"], result["rows"], result["dropped"]) == (3, 4, 0)
    manifest = ManifestStore(settings).get(PROMPT, MODEL)
    [row] = [
        r for r in ShardStore(settings).read(manifest.shards[0]).to_pylist() if r["image_id"] == "b"
    ]
    np.testing.assert_allclose(row["embedding"], vector, rtol=1e-6)  # the new version's row
    assert "b" in world.similar("a")
    assert EmbeddingStore(settings).get("b")["shard_key"] == manifest.shards[0]


def test_a_prompt_less_image_loses_its_backfill_vectors(stack):
    """No prompt, no manifests: the models of its vectors beside its own are on its record."""
    settings = stack.settings
    record = replace(
        embedded_image("loose", PROMPT),
        prompt=None,
        extra={"embedding_model_id": MODEL, "embedded_models": {MODEL, "model-b"}},
    )
    ImageStore(settings).put_version(record)
    embeddings = EmbeddingStore(settings)
    embeddings.put("loose", MODEL, np.ones(8, np.float32), None, record.etag, AT)
    embeddings.put_model_vector("loose", "model-b", np.ones(4, np.float32), record.etag, AT)
    answer = Deleter(settings).delete_image("loose")
    assert answer == {"image_id": "loose", "status": "deleted"}
    assert ImageStore(settings).get("loose")["status"] == "deleted"
    assert embeddings.get("loose") is None
    assert embeddings.get_for_model("loose", "model-b") is None


def test_a_delete_during_a_backfill_batch_is_not_undone_by_its_commit(
    world, sagemaker_emulator, tmp_path
):
    """As in an embedding run: the batch's commit tombstones the row it listed for an image
    deleted meanwhile, and removes the new model's vector it wrote beside the image's own."""
    settings = world.settings
    artifact = tmp_path / "color.tar.gz"
    build(artifact, family="color-layout-v1")
    aws.client(settings, "s3").upload_file(str(artifact), settings.bucket, "models/color.tar.gz")
    model_uri = f"s3://{settings.bucket}/models/color.tar.gz"
    backfill = Backfill(settings, "run-upgrade")
    plan = backfill.plan(model_uri, [PROMPT], 10, AT)
    new = plan["model_id"]
    assert (plan["batches"], plan["images"]) == (1, 4)
    assert ActiveModels(settings).get(PROMPT) == MODEL  # pinned: the prompt has a pointer now
    transform(settings, sagemaker_emulator, model_uri, backfill.batch_run(0))
    answer = requests.delete(f"{world.url}/images/b", timeout=10)  # while the job ran
    assert answer.status_code == 200, answer.text

    summary = backfill.commit(0)
    assert (summary["embedded"], summary["noted"], summary["deleted_during_run"]) == (4, 3, 1)
    embeddings = EmbeddingStore(settings)
    assert embeddings.get_for_model("b", new) is None
    assert embeddings.get_for_model("a", new) is not None
    assert ManifestStore(settings).get(PROMPT, new).tombstones == frozenset({"b"})
    assert ManifestStore(settings).get(PROMPT, MODEL).tombstones == frozenset({"b"})
    result = Compactor(settings).compact(PROMPT, new, "compact-new", max_rows=100)
    assert (result["rows"], result["dropped"]) == (3, 1)
