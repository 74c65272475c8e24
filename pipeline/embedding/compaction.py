"""Compaction: merge a prompt's small shards and drop deleted images' rows, safely for
readers, each new shard of at most `max_rows` rows (what one task holds in memory).

Which shards become which (pipeline.embedding.compaction_plan): runs of consecutive small
shards of one group (a vector index's, or those it has not synced: never mixed) packed into
shards of at most `max_rows` rows, and each shard holding a deleted image's row rewritten
without it (a large one row group by row group, read by ranges). One group per `compact`.

Order, per batch: write the new shard(s) (new keys), swap them into the manifest in place of
the old (compare-and-set on the version), repoint the Embeddings items, and only then delete
the old files. Every image appears exactly once in the result: where shards disagree (an image
was re-embedded), the row of the later shard in manifest order wins.

Deleted images: the shards holding a tombstoned id are found by their image_id column alone;
once no listed shard holds it, the tombstone is cleared, unless a shard listed meanwhile (a
run's new one) is there that compaction did not look at. Deletions past the item's room for
tombstones (`Manifest.deleted_unlisted`) are found by the Images records of every listed row.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from botocore.exceptions import ClientError

from pipeline import aws
from pipeline.embedding.compaction_plan import (
    Batch,
    batches,
    groups,
    mergeable,
    replaced,
    settled,
)
from pipeline.settings import Settings
from pipeline.storage.data_api import DataApi
from pipeline.storage.embeddings_table import EmbeddingStore
from pipeline.storage.images_table import DELETED, ImageStore
from pipeline.storage.keys import shard_key, shard_prefix
from pipeline.storage.manifests_table import Manifest, ManifestStore, is_pointer
from pipeline.storage.shards import ShardStore, merge_tables
from pipeline.storage.vector_index import VectorIndex

MAX_IN_VALUES = 100  # DynamoDB's limit on the operands of IN
REPOINT_THREADS = 8
LOOKUP_THREADS = 4  # shards whose ids are read (and records looked up) at once

Written = tuple[str, int, list[str]]  # a new shard: key, rows, image ids


class Compactor:
    def __init__(
        self,
        settings: Settings,
        shards: ShardStore | None = None,
        manifests: ManifestStore | None = None,
        embeddings: EmbeddingStore | None = None,
        s3: Any | None = None,
        images: ImageStore | None = None,
        index: VectorIndex | None = None,
    ) -> None:
        self.settings = settings
        if index is None and settings.vector_index_enabled:
            index = VectorIndex(DataApi(settings))
        self.index = index  # deleted images' rows leave it before their tombstones go
        self.shards = shards or ShardStore(settings)
        self.manifests = manifests or ManifestStore(settings)
        self.embeddings = embeddings or EmbeddingStore(settings)
        self.images = images or ImageStore(settings)
        self._s3 = s3 or aws.client(settings, "s3")

    def candidates(self, max_rows: int, due_only: bool = False) -> list[dict[str, str]]:
        """(prompt, model_id) pairs with consecutive small shards to merge or with deleted
        rows to drop; `due_only`: those whose manifest cannot wait for the daily run
        (`Manifest.compaction_due`). The prompts' active-model pointers are not manifests."""
        pages = self.manifests.client.get_paginator("scan").paginate(TableName=self.manifests.table)
        found = []
        for page in pages:
            for item in page.get("Items", []):
                if is_pointer(item):
                    continue
                manifest = ManifestStore.from_item(item)  # the scan already has the item
                if due_only and not manifest.compaction_due:
                    continue
                if (
                    mergeable(manifest, max_rows)
                    or manifest.tombstones
                    or manifest.deleted_unlisted
                ):
                    found.append({"prompt": manifest.prompt, "model_id": manifest.model_id})
        return found

    def compact_all(
        self, prompt: str, model_id: str, run_id: str, max_rows: int
    ) -> list[dict[str, Any]]:
        """`compact` until nothing is left: one call per group at most."""
        results = [self.compact(prompt, model_id, run_id, max_rows)]
        while results[-1]["compacted"] and len(results) < 3:
            results.append(self.compact(prompt, model_id, run_id, max_rows))
        return results

    def compact(self, prompt: str, model_id: str, run_id: str, max_rows: int) -> dict[str, Any]:
        """One group's batches written and swapped in, one at a time; then the tombstones
        (and deletions past them) no listed shard holds any more cleared."""
        manifest = self.manifests.get(prompt, model_id)
        if manifest is None:
            return {"prompt": prompt, "compacted": 0}
        looked = bool(manifest.tombstones or manifest.deleted_unlisted)
        known = self._deleted_rows(manifest) if looked else {}
        dropped = manifest.tombstones.union(*known.values())
        work: list[Batch] = []
        for group in groups(manifest):
            work = batches(manifest, group, max_rows, known if looked else None)
            if work:
                break
        written: list[Written] = []
        for batch in work:
            new = self._rewrite(batch, dropped, manifest, run_id, max_rows)
            self._swap(manifest, batch, new)
            known.update({key: frozenset() for key, _, _ in new})
            written.extend(new)
        if looked and dropped and manifest.index_table and self.index is not None:
            # the tombstones are about to be cleared: the index's rows of those images first
            self.index.delete(manifest.index_table, dropped)
        if looked:
            self.manifests.update(
                prompt,
                model_id,
                lambda m: settled(m, known, manifest.tombstones, manifest.deleted_unlisted),
            )
        return {
            "prompt": prompt,
            "compacted": sum(len(b.shards) for b in work),
            "rows": sum(rows for _, rows, _ in written),
            "dropped": len(dropped),
            "shard": written[-1][0] if written else None,
            "shards": [key for key, _, _ in written],
        }

    def _deleted_rows(self, manifest: Manifest) -> dict[str, frozenset[str]]:
        """For each listed shard, the deleted images it holds a row of: tombstoned ids, and
        with deletions past the tombstones, ids whose Images record is a deletion marker.
        Only the image_id column is read."""
        tombstones = pa.array(sorted(manifest.tombstones), pa.string())

        def look(key: str) -> frozenset[str]:
            ids = self.shards.ids(key)
            held = set(pc.filter(ids, pc.is_in(ids, value_set=tombstones)).to_pylist())
            if manifest.deleted_unlisted:
                records = self.images.batch_get(ids.to_pylist(), ["status"])
                held |= {i for i, r in records.items() if r.get("status") == DELETED}
            return frozenset(held)

        with ThreadPoolExecutor(LOOKUP_THREADS) as pool:
            return dict(zip(manifest.shards, pool.map(look, manifest.shards), strict=True))

    def _rewrite(
        self, batch: Batch, dropped: frozenset[str], m: Manifest, run_id: str, max_rows: int
    ) -> list[Written]:
        """The batch's rows without the `dropped` ids, in new shards of at most `max_rows`
        rows at keys derived from the run and the batch (a retry overwrites the same)."""
        digest = hashlib.sha256("\0".join(batch.shards).encode("utf-8")).hexdigest()[:12]

        def write(n: int, table: pa.Table) -> Written:
            key = shard_key(m.model_id, m.prompt, f"{run_id}.{digest}.{n}", part="compact")
            self.shards.write(key, table)
            return key, int(table.num_rows), table.column("image_id").to_pylist()

        if not batch.big:
            merged = merge_tables([self.shards.read(k) for k in batch.shards], dropped)
            return [write(0, merged)] if merged.num_rows else []
        source = self.shards.open(batch.shards[0])
        gone = pa.array(sorted(dropped), pa.string())
        written: list[Written] = []
        held: list[pa.Table] = []
        count = 0
        for index in range(source.num_row_groups):
            group = source.read_row_group(index)
            group = group.filter(pc.invert(pc.is_in(group.column("image_id"), value_set=gone)))
            held.append(group)
            count += group.num_rows
            while count >= max_rows:
                table = pa.concat_tables(held)
                written.append(write(len(written), table.slice(0, max_rows)))
                rest = table.slice(max_rows)
                held, count = [rest], rest.num_rows
        if count:
            written.append(write(len(written), pa.concat_tables(held)))
        return written

    def _swap(self, manifest: Manifest, batch: Batch, new: list[Written]) -> None:
        """The new shards listed in place of the batch's, their images repointed, the old
        files deleted; nothing but an orphan left when the batch was swapped out already."""
        after = self.manifests.update(
            manifest.prompt,
            manifest.model_id,
            lambda m: replaced(m, batch.shards, tuple((k, r) for k, r, _ in new)),
        )
        if any(k in after.shards for k in batch.shards):
            return
        for key, _, ids in new:
            self._repoint(ids, batch.shards, key)
        for key in batch.shards:
            if key not in {k for k, _, _ in new}:
                self.shards.delete(key)

    def _repoint(self, ids: list[str], old: tuple[str, ...], new_key: str) -> None:
        """Point each image's Embeddings item at the new shard if it named one of the old
        ones: one conditional UpdateItem per image (`shard_key IN` the old keys), a few in
        flight at once."""
        client = self.embeddings.client
        for start in range(0, len(old), MAX_IN_VALUES):
            chunk = old[start : start + MAX_IN_VALUES]
            names = {f":o{n}": {"S": key} for n, key in enumerate(chunk)}

            def repoint(image_id: str, names: dict[str, Any] = names) -> None:
                try:
                    client.update_item(
                        TableName=self.embeddings.table,
                        Key={"embedding_id": {"S": image_id}},
                        UpdateExpression="SET shard_key = :new",
                        ConditionExpression=f"shard_key IN ({', '.join(names)})",
                        ExpressionAttributeValues={":new": {"S": new_key}, **names},
                    )
                except ClientError as exc:  # by code: client.exceptions is built lazily, racily
                    if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                        raise

            with ThreadPoolExecutor(REPOINT_THREADS) as pool:
                list(pool.map(repoint, ids))

    def delete_orphans(self, prompt: str, model_id: str, older_than: timedelta) -> list[str]:
        """Delete shard files of this prompt that no manifest lists and that are older than
        any run could still be committing (a crash between write and swap leaves these)."""
        manifest = self.manifests.get(prompt, model_id)
        listed = set(manifest.shards) if manifest else set()
        prefix = shard_prefix(model_id, prompt)
        cutoff = datetime.now(UTC) - older_than
        deleted = []
        paginator = self._s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.settings.bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                if obj["Key"] not in listed and obj["LastModified"] < cutoff:
                    self._s3.delete_object(Bucket=self.settings.bucket, Key=obj["Key"])
                    deleted.append(obj["Key"])
        return deleted
