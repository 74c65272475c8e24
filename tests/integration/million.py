"""A million-image prompt's manifest, as realistic commits would leave it before a compaction:
2,000 runs of 500 images each (half of them a reembed's batches), a 200-character prompt, a
model id as long as the open_clip ones, every shard pending (the index sync stopped)."""

from __future__ import annotations

import uuid

from pipeline.storage.dynamodb_codec import serialize_item
from pipeline.storage.keys import reembed_batch_run, shard_key
from pipeline.storage.manifests_table import Manifest

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
