"""The multi-model parts of a model upgrade on moto and the SageMaker emulator: vectors of two
models side by side, the pointer's conditional switch, a query image re-embedded on demand by
the endpoint of the prompt's active model, and the clear refusals."""

from __future__ import annotations

import base64
import uuid
from dataclasses import replace

import numpy as np
import pytest

from pipeline import aws
from pipeline.errors import ApiError
from pipeline.local.embed_endpoint import ensure_endpoint
from pipeline.lookup.on_demand import OnDemandQueries
from pipeline.lookup.similarity import SimilarityService
from pipeline.storage.active_models import ActiveModels, Pointer
from pipeline.storage.embeddings_table import EmbeddingStore
from pipeline.storage.images_table import EMBEDDED, ImageRecord, ImageStore
from pipeline.storage.manifests_table import ManifestStore
from pipeline.upgrade.backfill import Backfill
from pipeline.upgrade.follow_up import follow_up_runs
from pipeline.upgrade.retire import Retirement, RetireRefused
from sagemaker_jobs.build_model import build
from tests.helpers import commit_shard, embedded_records, gradient_jpeg

OLD = "test-vectors-v0"  # random vectors standing in for an old model's (no model made them)
NEW = "color-layout-v1"
PROMPT = "a moth"
AT = "2026-11-02T00:00:00.000Z"


@pytest.fixture(scope="module")
def world(module_stack, sagemaker_emulator, tmp_path_factory):
    """PROMPT with 20 candidates of both models, switched to NEW; the embedding endpoint
    serves NEW; `late` is an image embedded by OLD only (after the switch)."""
    settings = replace(
        module_stack.settings, embed_endpoint=f"embed-{uuid.uuid4().hex[:8]}"
    ).with_endpoint(sagemaker_emulator, ("sagemaker", "sagemaker-runtime"))
    artifact = tmp_path_factory.mktemp("color") / "color.tar.gz"
    build(artifact, family="color-layout-v1")
    s3 = aws.client(settings, "s3")
    s3.upload_file(str(artifact), settings.bucket, "models/color.tar.gz")
    ensure_endpoint(settings, f"s3://{settings.bucket}/models/color.tar.gz")
    rng = np.random.default_rng(5)
    names = [f"moth{i:02d}" for i in range(20)]
    commit_shard(settings, PROMPT, OLD, "run-old", {n: rng.standard_normal(16) for n in names})
    new = {n: rng.standard_normal(120) for n in names}
    new = {n: (v / np.linalg.norm(v)).astype(np.float32) for n, v in new.items()}
    commit_shard(settings, PROMPT, NEW, "run-new", new, embeddings_for=set())
    for name, vector in new.items():  # a backfill's vectors sit beside the images' own
        EmbeddingStore(settings).put_model_vector(name, NEW, vector, "etag-" + name, AT)
    embedded_records(settings, names, PROMPT)
    etag = s3.put_object(Bucket=settings.bucket, Key="uploads/late.jpg", Body=gradient_jpeg())[
        "ETag"
    ].strip('"')
    record = ImageRecord(
        image_id="late",
        created_at=AT,
        s3_key="uploads/late.jpg",
        source="uploaded",
        status=EMBEDDED,
        etag=etag,
        size_bytes=1,
        content_type="image/jpeg",
        prompt=PROMPT,
        extra={"embedding_model_id": OLD},
    )
    ImageStore(settings).put_version(record)
    EmbeddingStore(settings).put("late", OLD, rng.standard_normal(16).astype("f4"), None, etag, AT)
    active = ActiveModels(settings)
    assert active.pin(PROMPT, OLD, AT) == OLD
    assert active.switch(PROMPT, OLD, NEW, AT)
    return settings


def test_vectors_of_two_models_side_by_side(world):
    embeddings = EmbeddingStore(world)
    vector = np.arange(4, dtype=np.float32)
    embeddings.put_model_vector("moth00", "third-model", vector, "etag-moth00", AT)
    assert embeddings.get("moth00")["model_id"] == OLD  # the image's own vector is untouched
    assert embeddings.get_for_model("moth00", OLD)["dim"] == 16
    np.testing.assert_array_equal(
        embeddings.get_for_model("moth00", "third-model")["embedding"], vector
    )
    assert embeddings.get_for_model("moth00", "no-such-model") is None


def test_the_pointer_switches_only_from_the_model_it_names(world):
    active = ActiveModels(world)
    assert not active.switch(PROMPT, "some-other-model", "a-third", AT)  # a stale upgrade loses
    assert active.get(PROMPT) == NEW
    assert active.switch(PROMPT, OLD, NEW, AT)  # a retried switch succeeds, changes nothing
    assert active.models(PROMPT) == {OLD: 20, NEW: 20}
    assert active.pin("another prompt", "third-model", AT) == "third-model"
    assert active.pin("another prompt", NEW, AT) == "third-model"  # pinning never moves it


def test_a_query_image_without_the_active_models_vector_is_embedded_on_demand(world):
    EmbeddingStore(world).delete("late#" + NEW)
    service = SimilarityService.from_settings(world)
    page = service.lookup("late", PROMPT, k=5)
    assert page["model_id"] == NEW and len(page["results"]) == 5
    stored = EmbeddingStore(world).get_for_model("late", NEW)
    assert stored["dim"] == 120 and stored["source_etag"] == ImageStore(world).get("late")["etag"]
    matrix = {
        r["image_id"]: EmbeddingStore(world).get_for_model(r["image_id"], NEW)["embedding"]
        for r in page["results"]
    }
    for result in page["results"]:
        expected = float(matrix[result["image_id"]] @ stored["embedding"])
        assert result["similarity"] == pytest.approx(expected, abs=1e-5)


def test_without_an_endpoint_of_that_model_it_is_compared_with_its_own_models_candidates(world):
    elsewhere = replace(world, embed_endpoint="no-such-endpoint")
    EmbeddingStore(world).delete("late#" + NEW)
    page = SimilarityService.from_settings(elsewhere).lookup("late", PROMPT, k=3)
    assert page["model_id"] == OLD and len(page["results"]) == 3


def test_a_cursor_of_a_page_another_model_answered_is_a_400(world):
    """The pointer switches between two pages: the next page would be cut at a score of the
    old model's ranking, so the cursor is refused; back on its model it pages on."""
    service = SimilarityService.from_settings(world)
    first = service.lookup("moth00", PROMPT, k=5)
    assert first["model_id"] == NEW and first["next_cursor"]
    active = ActiveModels(world)
    assert active.switch(PROMPT, NEW, OLD, AT)
    try:
        assert service.lookup("moth00", PROMPT, k=5)["model_id"] == OLD
        with pytest.raises(ApiError) as caught:
            service.lookup("moth00", PROMPT, k=5, cursor=first["next_cursor"])
        assert caught.value.status == 400 and caught.value.code == "invalid_cursor"
    finally:
        assert active.switch(PROMPT, OLD, NEW, AT)
    second = service.lookup("moth00", PROMPT, k=5, cursor=first["next_cursor"])
    assert second["model_id"] == NEW and len(second["results"]) == 5


def test_a_sent_image_is_ranked_only_against_the_prompts_active_model(world):
    """POST /similarity with base64 images reads the pointer too: the endpoint serves NEW, so
    its vectors answer while NEW is active and are refused (409) while OLD is."""
    queries = OnDemandQueries(SimilarityService.from_settings(world))
    sent = base64.b64encode(gradient_jpeg()).decode()
    answer = queries.similar_to_each(PROMPT, 3, [sent], [])
    assert [q["model_id"] for q in answer["queries"]] == [NEW]
    active = ActiveModels(world)
    assert active.switch(PROMPT, NEW, OLD, AT)
    try:
        with pytest.raises(ApiError) as caught:
            queries.similar_to_each(PROMPT, 3, [sent], [])
        assert caught.value.status == 409 and caught.value.code == "model_mismatch"
        assert OLD in caught.value.message and NEW in caught.value.message
    finally:
        assert active.switch(PROMPT, OLD, NEW, AT)


def test_retire_refuses_a_model_that_answers_a_prompt(world):
    with pytest.raises(RetireRefused, match=f"{NEW} still answers"):
        Retirement(world).retire(NEW)
    assert ManifestStore(world).get(PROMPT, NEW).rows == 20


def test_a_query_image_whose_own_model_was_retired_gets_a_clear_409(world):
    elsewhere = replace(world, embed_endpoint="no-such-endpoint")
    EmbeddingStore(world).delete("late#" + NEW)
    summary = Retirement(world).retire(OLD, dry_run=True)
    assert summary["prompts"] == [PROMPT] and summary["dry_run"]
    ddb = aws.client(world, "dynamodb")
    key = {"prompt": {"S": PROMPT}, "model_id": {"S": OLD}}
    manifest = ddb.get_item(TableName=world.shard_manifests_table, Key=key)["Item"]
    ddb.delete_item(TableName=world.shard_manifests_table, Key=key)  # as retire leaves it
    try:
        with pytest.raises(ApiError) as caught:
            SimilarityService.from_settings(elsewhere).lookup("late", PROMPT, k=3)
        assert caught.value.status == 409 and caught.value.code == "model_mismatch"
    finally:
        ddb.put_item(TableName=world.shard_manifests_table, Item=manifest)


def test_a_backfill_plan_refuses_a_file_that_is_not_a_model(world):
    s3 = aws.client(world, "s3")
    s3.put_object(Bucket=world.bucket, Key="models/junk.tar.gz", Body=b"not a tarball")
    with pytest.raises(ValueError, match=r"is not a model\.tar\.gz"):
        Backfill(world, "run-junk").plan(f"s3://{world.bucket}/models/junk.tar.gz", None, 10, AT)
    with pytest.raises(ValueError, match="must be s3://bucket/key"):
        Backfill(world, "run-junk").plan("https://example.com/model.tar.gz", None, 10, AT)


def test_a_retried_plan_names_the_same_batches_a_different_plan_new_ones(world):
    """A re-plan of the same run (a cleared DAG run) never rewrites a listed shard's key with
    other rows: its batches get new names unless it planned exactly the same."""
    url = f"s3://{world.bucket}/models/color.tar.gz"

    def names(batch_size):
        backfill = Backfill(world, "run-replan")
        plan = backfill.plan(url, [PROMPT], batch_size, AT)
        assert plan["model_id"] == NEW and plan["images"] == 21  # none has NEW noted yet
        return [backfill.batch_run(b).run_id for b in range(plan["batches"])]

    first = names(8)
    assert len(first) == 3 and names(8) == first
    assert not set(names(5)) & set(first)
    assert ActiveModels(world).get(PROMPT) == NEW  # planning never moves a pointer back


def test_a_commit_calls_for_a_reembed_run_per_artifact_of_its_switched_prompts(stack):
    active = ActiveModels(stack.settings)
    at = "2026-11-02T00:00:00.000Z"
    new_url, other_url = "s3://b/models/new/model.tar.gz", "s3://b/models/other/model.tar.gz"
    assert active.pin("pinned", "new", at) == "new"  # no artifact: nothing says what re-embeds
    assert active.switch("same", None, "old", at, "s3://b/old.tar.gz")  # the run's own model
    assert active.switch("fox", None, "new", at) and active.switch("fox", "new", "new", at, new_url)
    assert active.switch("cup", None, "new", at, new_url)
    assert active.switch("moth", None, "other", at, other_url)
    assert active.pointer("fox") == Pointer("new", new_url)
    assert active.model_data_url("pinned") is None and active.pointer("nothing") is None
    report = {"model_id": "old", "prompts": ["pinned", "same", "fox", "cup", "moth", "nothing"]}
    assert follow_up_runs(active, report) == [
        {"model_data_url": new_url, "prompts": ["cup", "fox"]},
        {"model_data_url": other_url, "prompts": ["moth"]},
    ]
    assert follow_up_runs(active, {"model_id": "new", "prompts": ["fox", "cup"]}) == []
    assert follow_up_runs(active, {"model_id": None, "prompts": []}) == []  # nothing embedded
