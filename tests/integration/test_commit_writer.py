"""The commit writer's own rules on moto: no Embeddings item before its image's rows are
listed, and an image deleted while its rows were listed is withdrawn again."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from pipeline.commit.writer import Committed, CommitWriter, UnlistedVector
from pipeline.storage.embeddings_table import EmbeddingStore
from pipeline.storage.images_table import ImageStore
from pipeline.storage.keys import shard_key
from pipeline.storage.manifests_table import ManifestStore
from pipeline.storage.run_stores import RunStores
from pipeline.storage.shards import ShardRow
from tests.helpers import embedded_image

MODEL = "color-layout-v1"
PROMPT = "a red fox"
VECTOR = np.ones(8, np.float32) / np.sqrt(8)


def _row(image_id: str, etag: str) -> ShardRow:
    created = datetime(2026, 11, 1, tzinfo=UTC)
    return ShardRow(image_id, VECTOR, created, f"uploads/{image_id}.jpg", etag)


def test_a_vector_waits_for_its_rows_to_be_listed(stack):
    writer = CommitWriter(RunStores.from_settings(stack.settings))
    image = Committed("a", "etag-a", PROMPT)
    key = shard_key(MODEL, PROMPT, "run-1")
    with pytest.raises(UnlistedVector):
        writer.put_vector(image, MODEL, VECTOR, key, "t")
    assert EmbeddingStore(stack.settings).get("a") is None
    writer.write_and_list(key, MODEL, PROMPT, [_row("a", "etag-a")])
    writer.put_vector(image, MODEL, VECTOR, key, "t")
    assert EmbeddingStore(stack.settings).get("a")["shard_key"] == key
    # an image without a prompt has no shard to list
    writer.put_vector(Committed("b", "etag-b", None), MODEL, VECTOR, None, "t")


def test_an_image_deleted_while_its_rows_were_listed_is_withdrawn(stack):
    settings = stack.settings
    images = ImageStore(settings)
    images.put_version(embedded_image("x", PROMPT))
    record = images.get("x")
    assert images.mark_deleted("x", record["etag"], PROMPT, "t", None)
    writer = CommitWriter(RunStores.from_settings(settings))
    listed = Committed("x", record["etag"], PROMPT)
    key = shard_key(MODEL, PROMPT, "run-2")
    writer.write_and_list(key, MODEL, PROMPT, [_row("x", record["etag"])])
    writer.put_vector(listed, MODEL, VECTOR, key, "t")
    assert "x" not in ManifestStore(settings).get(PROMPT, MODEL).tombstones
    records = writer.settle_deleted([listed])
    assert records["x"]["status"] == "deleted"
    assert "x" in ManifestStore(settings).get(PROMPT, MODEL).tombstones
    assert EmbeddingStore(settings).get("x") is None


def test_listing_notes_the_row_created_last_for_the_prompts_list(stack):
    writer = CommitWriter(RunStores.from_settings(stack.settings))
    late = ShardRow("late", VECTOR, datetime(2026, 11, 2, tzinfo=UTC), "uploads/late.jpg", "e")
    writer.write_and_list(
        shard_key(MODEL, PROMPT, "run-1"), MODEL, PROMPT, [_row("a", "e"), late, _row("b", "e")]
    )
    manifest = ManifestStore(stack.settings).get(PROMPT, MODEL)
    assert manifest.newest == ("late", "2026-11-02T00:00:00.000Z")
    # a later commit of older images keeps it
    writer.write_and_list(shard_key(MODEL, PROMPT, "run-2"), MODEL, PROMPT, [_row("c", "e")])
    assert ManifestStore(stack.settings).get(PROMPT, MODEL).newest == manifest.newest
