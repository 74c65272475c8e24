"""Near-duplicates: an image whose vector is at least `near_duplicate_threshold` (cosine) from
an earlier image of the same prompt and model is recorded `near_duplicate_of` that image's
group root, when its embedding is committed. Earlier means (created_at, image_id) order, so
two runs or a replay pick the same root; the root is the earliest such image, or the root
it already points to, so a group has one root and never a chain.

The check reads the prompt's shards once per commit (the run has just listed its own) and
compares the run's new rows with every row in blocks, so its memory stays bounded. A prompt
with a vector index is not read whole: the new rows are compared with the shards the index has
not synced (the run's own among them) in memory, and with the index's rows by a search with
the threshold as `min_score` (the best `INDEX_HITS` of them: any member of a group leads to its
root, so the cap changes no root).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import numpy as np
import pyarrow as pa

from pipeline.commit.writer import Committed, CommitWriter, is_deleted
from pipeline.settings import Settings
from pipeline.storage.dynamodb_codec import timestamp
from pipeline.storage.embeddings_table import EmbeddingStore
from pipeline.storage.images_table import EMBEDDED, ImageStore
from pipeline.storage.manifests_table import ManifestStore
from pipeline.storage.run_stores import RunStores
from pipeline.storage.shards import ShardStore, merge_tables
from pipeline.storage.vector_index import VectorIndex

BLOCK = 256  # new rows compared with every row at a time: BLOCK x rows float32 scores
COLUMNS = ["image_id", "embedding", "created_at"]
INDEX_HITS = 100  # index rows over the threshold looked at per new image


def nearest_earlier(new_ids: Sequence[str], table: pa.Table, threshold: float) -> dict[str, str]:
    """For each new id, the earliest other row that sorts before it in (created_at, image_id)
    with cosine >= threshold. Rows are L2-normalized. Pure."""
    ids = table.column("image_id").to_pylist()
    vectors = table.column("embedding").combine_chunks()
    matrix = vectors.values.to_numpy(zero_copy_only=False).reshape(len(ids), -1)
    created = table.column("created_at").to_pylist()
    order = {image_id: (created[n], image_id) for n, image_id in enumerate(ids)}
    row = {image_id: n for n, image_id in enumerate(ids)}
    present = [i for i in new_ids if i in row]
    found: dict[str, str] = {}
    for start in range(0, len(present), BLOCK):
        block = present[start : start + BLOCK]
        scores = matrix[[row[i] for i in block]] @ matrix.T
        for n, image_id in enumerate(block):
            hits = np.flatnonzero(scores[n] >= np.float32(threshold))
            earlier = [ids[h] for h in hits if order[ids[h]] < order[image_id]]
            if earlier:
                found[image_id] = min(earlier, key=order.__getitem__)
    return found


class PostCommit:
    """The steps after an embedding run's commit: images deleted during the run lose what the
    commit wrote for them (the commit writer's `settle_deleted`), and new images get their
    `near_duplicate_of`."""

    def __init__(
        self,
        settings: Settings,
        images: ImageStore,
        manifests: ManifestStore,
        shards: ShardStore,
        index: VectorIndex | None = None,
    ) -> None:
        self.threshold = settings.near_duplicate_threshold
        self.index = index  # None: every prompt's shards are read whole
        self.images = images
        self.manifests = manifests
        self.shards = shards
        self.writer = CommitWriter(RunStores(images, EmbeddingStore(settings), manifests, shards))

    def after_commit(
        self, model_id: str, committed: list[Committed], refused: list[Committed]
    ) -> dict[str, int]:
        """`committed`: images whose status the commit set; `refused`: those whose record
        refused it (replaced, or deleted during the run)."""
        settled = sum(map(is_deleted, self.writer.settle_deleted(refused).values()))
        near = 0
        for prompt in sorted({c.prompt for c in committed if c.prompt}):
            mine = [c for c in committed if c.prompt == prompt]
            near += self.mark(prompt, model_id, mine)
        return {"deleted_during_run": settled, "near_duplicates": near}

    def mark(self, prompt: str, model_id: str, new: list[Committed]) -> int:
        """Record `near_duplicate_of` on the new images of one prompt that have an earlier
        near-duplicate; returns how many."""
        manifest = self.manifests.get(prompt, model_id)
        if manifest is None or not manifest.shards:
            return 0
        indexed = self.index is not None and manifest.index_table is not None
        keys = manifest.unindexed_shards if indexed else manifest.shards
        tables = [self.shards.read(k, COLUMNS) for k in keys]
        table = merge_tables(tables, manifest.tombstones) if tables else None
        new_ids = [c.image_id for c in new]
        nearest = nearest_earlier(new_ids, table, self.threshold) if table is not None else {}
        if indexed and table is not None:
            assert manifest.index_table is not None
            nearest = self._with_index(manifest.index_table, new_ids, table, nearest)
        if not nearest:
            return 0
        targets = sorted(set(nearest.values()))
        records = self.images.batch_get(targets, ["status", "prompt", "near_duplicate_of"])
        groups: dict[str, str | None] = {}

        def group(image_id: str) -> str | None:
            """The root of the image's group; None when its earlier image is nobody's root
            (a replaced or deleted row). Earlier images resolve first: no chains."""
            if image_id not in groups:
                earlier = nearest[image_id]
                record = records.get(earlier) or {}
                if record.get("status") != EMBEDDED or record.get("prompt") != prompt:
                    groups[image_id] = None
                elif earlier in nearest:
                    groups[image_id] = group(earlier) or earlier
                else:
                    groups[image_id] = record.get("near_duplicate_of") or earlier
            return groups[image_id]

        etags = {c.image_id: c.etag for c in new}
        marked = 0
        for image_id in sorted(nearest):
            root = group(image_id)
            if root and self.images.set_outcome(
                image_id, etags[image_id], {"near_duplicate_of": root}
            ):
                marked += 1
        return marked

    def _with_index(
        self, index_table: str, new_ids: list[str], table: pa.Table, nearest: dict[str, str]
    ) -> dict[str, str]:
        """`nearest` (found among the unsynced rows) with the index's earlier rows over the
        threshold: the earliest of both, in (created_at, image_id) order."""
        assert self.index is not None
        ids = table.column("image_id").to_pylist()
        created = dict(zip(ids, table.column("created_at").to_pylist(), strict=True))
        vectors = table.column("embedding").combine_chunks()
        matrix = vectors.values.to_numpy(zero_copy_only=False).reshape(len(ids), -1)
        row = {image_id: n for n, image_id in enumerate(ids)}
        hits: dict[str, list[str]] = {}
        for image_id in new_ids:
            if image_id in row:
                found = self.index.search(
                    index_table, matrix[row[image_id]], INDEX_HITS, image_id, self.threshold
                )
                hits[image_id] = [h.image_id for h in found]
        others = sorted({h for near in hits.values() for h in near} - set(created))
        records = self.images.batch_get(others, ["created_at"]) if others else {}
        order = {i: (_instant(created[i]), i) for i in created}
        order |= {
            i: (_instant(r["created_at"]), i) for i, r in records.items() if "created_at" in r
        }
        merged = dict(nearest)
        for image_id, near in hits.items():
            earlier = [h for h in near if h in order and order[h] < order[image_id]]
            if image_id in merged:
                earlier.append(merged[image_id])
            if earlier:
                merged[image_id] = min(earlier, key=order.__getitem__)
        return merged


def _instant(value: object) -> str:
    """A created_at (a shard's timestamp or a record's ISO string) as one sortable string."""
    return timestamp(value) if isinstance(value, datetime) else str(value)
