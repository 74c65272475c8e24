"""A prompt of a million images: its manifest item against DynamoDB's 400 KB limit, on moto.

Realistic before a compaction: 2,000 embedding runs of 500 images each (the reembed DAG's
default batch, and the size of a commit while uploads stream in), a 200-character prompt, a
model id as long as the open_clip ones, every shard pending (the index sync stopped), and the
tombstones of the deletions since the last compaction.
"""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from pipeline import aws
from pipeline.commit.writer import CommitWriter
from pipeline.embedding.compaction import Compactor
from pipeline.storage.keys import shard_key
from pipeline.storage.manifest_item import ITEM_LIMIT_BYTES, TOMBSTONE_BYTES, item_bytes
from pipeline.storage.manifests_table import ManifestStore, to_item
from pipeline.storage.run_stores import RunStores
from tests.integration.million import IMAGES, MODEL, PROMPT, legacy_item, million


def test_the_old_layout_broke_the_limit_and_the_new_one_keeps_under_it():
    manifest = million(tombstones=1000)
    assert manifest.rows == IMAGES and len(manifest.shards) == 2000
    old, new = item_bytes(legacy_item(manifest)), manifest.item_bytes
    assert old > 3 * ITEM_LIMIT_BYTES  # about 1.3 MB
    assert new < ITEM_LIMIT_BYTES // 2
    # where the old layout broke: a few hundred runs, with no tombstone at all
    broke = next(
        r for r in range(100, 2001, 10) if item_bytes(legacy_item(million(r))) > ITEM_LIMIT_BYTES
    )
    assert broke < 700
    # the new layout, every tombstone the item has room for: under the limit still
    full = million(tombstones=5000)
    assert full.deleted_unlisted > 0 and full.item_bytes < ITEM_LIMIT_BYTES


def test_moto_refuses_the_old_item_and_stores_the_new_one(stack):
    settings = stack.settings
    client = aws.client(settings, "dynamodb")
    manifest = million(tombstones=5000)
    with pytest.raises(ClientError, match="Item size has exceeded"):
        client.put_item(TableName=settings.shard_manifests_table, Item=legacy_item(manifest))
    store = ManifestStore(settings)
    store.update(PROMPT, MODEL, lambda _: manifest)
    stored = store.get(PROMPT, MODEL)
    assert stored.shards == manifest.shards and stored.pending == manifest.pending
    assert stored.tombstones == manifest.tombstones and stored.version == 1
    assert item_bytes(to_item(stored)) == manifest.item_bytes < ITEM_LIMIT_BYTES


def test_commits_and_deletions_at_that_size_never_fail_and_make_compaction_due(stack):
    settings = stack.settings
    store = ManifestStore(settings)
    full = million(tombstones=2000)  # the tombstones' room is full
    store.update(PROMPT, MODEL, lambda _: full)
    writer = CommitWriter(RunStores.from_settings(settings))
    # deletions past the tombstones' room: each one still succeeds, counted instead
    for n in range(3):
        writer.withdraw(f"deleted{n:04d}" + "x" * 100, PROMPT)
    manifest = store.get(PROMPT, MODEL)
    assert manifest.deleted_unlisted == full.deleted_unlisted + 3
    assert manifest.item_bytes < ITEM_LIMIT_BYTES
    listed = to_item(manifest)["tombstones"]
    assert item_bytes({"tombstones": listed}) <= TOMBSTONE_BYTES
    assert manifest.live_rows == IMAGES - len(manifest.tombstones) - manifest.deleted_unlisted
    # a commit on top: listed last, still under the limit
    key = shard_key(MODEL, PROMPT, "asset_triggered__2026-12-08T00:00:00+00:00")
    writer.list_shard(key, MODEL, PROMPT, 500, [f"new{n}" for n in range(500)])
    manifest = store.get(PROMPT, MODEL)
    assert manifest.shards[-1] == key and manifest.rows == IMAGES + 500
    assert manifest.item_bytes < ITEM_LIMIT_BYTES
    # the compaction an embedding commit triggers takes it now, not tomorrow
    assert manifest.compaction_due
    found = Compactor(settings).candidates(max_rows=100_000, due_only=True)
    assert {"prompt": PROMPT, "model_id": MODEL} in found
