"""Compaction: merge a prompt's small shards into one, safely for readers.

Order: write the merged shard (new key), swap it into the manifest in place of the merged ones
(compare-and-set on the version), repoint the Embeddings items, and only then delete the old
files. Every image appears exactly once in the result: where shards disagree (an image was
re-embedded), the row of the later shard in manifest order wins.

Deleted images: a manifest with tombstones is compacted whole (every shard, whatever its size),
the tombstoned rows are left out of the merged shard, and the swap clears the tombstones it
applied, unless another shard is listed beside it (a run's new one, or those a vector index
keeps apart: it may hold a row of one of them, so the tombstones stay for the next compaction).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from botocore.exceptions import ClientError

from pipeline import aws
from pipeline.settings import Settings
from pipeline.storage.embeddings_table import EmbeddingStore
from pipeline.storage.keys import shard_key, shard_prefix
from pipeline.storage.manifests_table import Manifest, ManifestStore, is_pointer
from pipeline.storage.shards import ShardStore, merge_tables

MAX_IN_VALUES = 100  # DynamoDB's limit on the operands of IN
REPOINT_THREADS = 8


class Compactor:
    def __init__(
        self,
        settings: Settings,
        shards: ShardStore | None = None,
        manifests: ManifestStore | None = None,
        embeddings: EmbeddingStore | None = None,
        s3: Any | None = None,
    ) -> None:
        self.settings = settings
        self.shards = shards or ShardStore(settings)
        self.manifests = manifests or ManifestStore(settings)
        self.embeddings = embeddings or EmbeddingStore(settings)
        self._s3 = s3 or aws.client(settings, "s3")

    def candidates(self, max_rows: int) -> list[dict[str, str]]:
        """(prompt, model_id) pairs with at least two shards smaller than max_rows, or with
        tombstones; the prompts' active-model pointers are not manifests."""
        pages = self.manifests.client.get_paginator("scan").paginate(TableName=self.manifests.table)
        found = []
        for page in pages:
            for item in page.get("Items", []):
                if is_pointer(item):
                    continue
                manifest = ManifestStore.from_item(item)  # the scan already has the item
                if len(self._picked(manifest, max_rows)) >= 2 or manifest.tombstones:
                    found.append({"prompt": manifest.prompt, "model_id": manifest.model_id})
        return found

    @staticmethod
    def _picked(manifest: Manifest, max_rows: int) -> tuple[str, ...]:
        """The small shards; every shard when deleted rows are to be dropped. With a vector
        index, the shards it holds and those it has not synced yet are never merged together
        (a merged shard would be pending whole, and the exact scan would cover it all): the
        indexed ones first, then the pending ones."""
        groups = [manifest.indexed_shards, manifest.unindexed_shards]
        for group in [g for g in groups if g]:
            if manifest.tombstones:
                return group
            small = tuple(k for k in group if manifest.shard_rows.get(k, 0) < max_rows)
            if len(small) >= 2:
                return small
        return ()

    def compact(self, prompt: str, model_id: str, run_id: str, max_rows: int) -> dict[str, Any]:
        manifest = self.manifests.get(prompt, model_id)
        picked = self._picked(manifest, max_rows) if manifest else ()
        dropped = manifest.tombstones if manifest else frozenset()
        if len(picked) < 2 and not (picked and dropped):
            return {"prompt": prompt, "compacted": 0}
        merged = merge_tables([self.shards.read(k) for k in picked], dropped)
        new_key = shard_key(model_id, prompt, run_id, part="compact")
        self.shards.write(new_key, merged)
        self.manifests.update(
            prompt, model_id, lambda m: _swap(m, picked, new_key, merged.num_rows, dropped)
        )
        self._repoint(merged, picked, new_key)
        for key in picked:
            if key != new_key:
                self.shards.delete(key)
        return {
            "prompt": prompt,
            "compacted": len(picked),
            "rows": merged.num_rows,
            "dropped": len(dropped),
            "shard": new_key,
        }

    def _repoint(self, merged: pa.Table, old: tuple[str, ...], new_key: str) -> None:
        """Point each merged image's Embeddings item at the new shard if it named one of the
        merged ones: one conditional UpdateItem per image (`shard_key IN` the old keys), a few
        in flight at once."""
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
                list(pool.map(repoint, pc.unique(merged.column("image_id")).to_pylist()))

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


def _swap(
    m: Manifest, picked: tuple[str, ...], new_key: str, rows: int, dropped: frozenset[str]
) -> Manifest:
    """The merged shard in place of the picked ones; the tombstones it applied cleared when no
    other shard is listed beside it. Pure."""
    if not any(k in m.shards for k in picked):
        return m
    swapped = m.swapped(tuple(k for k in picked if k in m.shards), new_key, rows)
    if set(swapped.shards) == {new_key}:
        swapped = replace(swapped, tombstones=swapped.tombstones - dropped)
    return swapped
