"""A prompt of a million images: its manifest item against DynamoDB's 400 KB limit, on moto.

Realistic before a compaction: 2,000 embedding runs of 500 images each (the reembed DAG's
default batch, and the size of a commit while uploads stream in), a 200-character prompt, a
model id as long as the open_clip ones, every shard pending (the index sync stopped), and the
tombstones of the deletions since the last compaction.
"""

from __future__ import annotations

import uuid

import pytest
from botocore.exceptions import ClientError

from pipeline import aws
from pipeline.commit.writer import CommitWriter
from pipeline.embedding.compaction import Compactor
from pipeline.storage.dynamodb_codec import serialize_item
from pipeline.storage.keys import reembed_batch_run, shard_key
from pipeline.storage.manifest_item import ITEM_LIMIT_BYTES, TOMBSTONE_BYTES, item_bytes
from pipeline.storage.manifests_table import Manifest, ManifestStore, to_item
from pipeline.storage.run_stores import RunStores

PROMPT = (
    "studio product photo of a leather running shoe on a white background, side view, soft "
    "shadow, high detail, catalogue style, natural light, 50mm lens, sharp focus, neutral "
    "colours, no text, no logo, centred"
)[:200]
MODEL = "clip-vit-b32-laion2b-s34b-b79k-onnx-fp16"
RUN = "asset_triggered__2026-12-07T21:57:08.562000+00:00"
IMAGES, PER_RUN = 1_000_000, 500


def million(runs: int = IMAGES // PER_RUN, tombstones: int = 0, pending: bool = True) -> Manifest:
    """The manifest of `runs` commits of PER_RUN images (embedding and reembed batches) and
    `tombstones` deletions of server-made ids, built in memory as the commits would."""
    manifest = Manifest(
        PROMPT, MODEL, index_table="imgsim_vec_0123456789abcdef_3" if pending else None
    )
    for n in range(runs):
        run = reembed_batch_run(RUN, n) if n % 2 else f"{RUN[:-6]}{n:06d}+00:00"
        key = shard_key(MODEL, PROMPT, run, part="reembed" if n % 2 else "part")
        manifest = manifest.with_shard(key, PER_RUN, ())
    ids = frozenset(uuid.UUID(int=n).hex for n in range(tombstones))
    return manifest.with_tombstones(ids)


def legacy_item(m: Manifest) -> dict:
    """The item as it was written before: full keys, a shard_rows map keyed by them, a rows
    total, pending keys, every tombstone."""
    return serialize_item(
        {
            "prompt": m.prompt,
            "model_id": m.model_id,
            "shards": list(m.shards),
            "shard_rows": m.shard_rows,
            "rows": m.rows,
            "version": 1,
            "tombstones": sorted(m.tombstones),
            **(
                {"index_table": m.index_table, "pending": list(m.pending), "index_rows": 0}
                if m.index_table
                else {}
            ),
        }
    )


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
