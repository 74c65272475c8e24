"""Compaction: merge a prompt's small shards into one, safely for readers.

Order: write the merged shard (new key), swap it into the manifest in place of the merged ones
(compare-and-set on the version), repoint the Embeddings items, and only then delete the old
files. Every image appears exactly once in the result: where shards disagree (an image was
re-embedded), the row of the later shard in manifest order wins.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from pipeline import aws
from pipeline.settings import Settings
from pipeline.storage.embeddings_table import EmbeddingStore
from pipeline.storage.keys import shard_key, shard_prefix
from pipeline.storage.manifests_table import Manifest, ManifestStore
from pipeline.storage.shards import ShardStore


def merge_tables(tables: list[pa.Table]) -> pa.Table:
    """Concatenate, keep the last row per image_id, sort by image_id. Pure."""
    combined = pa.concat_tables(tables)
    ids = combined.column("image_id").to_pylist()
    last = {image_id: i for i, image_id in enumerate(ids)}
    keep = sorted(last.values(), key=lambda i: ids[i])
    return combined.take(pa.array(keep, pa.int64())).replace_schema_metadata(
        tables[-1].schema.metadata
    )


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
        """(prompt, model_id) pairs with at least two shards smaller than max_rows."""
        pages = self.manifests.client.get_paginator("scan").paginate(TableName=self.manifests.table)
        found = []
        for page in pages:
            for item in page.get("Items", []):
                manifest = ManifestStore.from_item(item)  # the scan already has the item
                if len(self._small(manifest, max_rows)) >= 2:
                    found.append({"prompt": manifest.prompt, "model_id": manifest.model_id})
        return found

    @staticmethod
    def _small(manifest: Manifest, max_rows: int) -> tuple[str, ...]:
        return tuple(k for k in manifest.shards if manifest.shard_rows.get(k, 0) < max_rows)

    def compact(self, prompt: str, model_id: str, run_id: str, max_rows: int) -> dict[str, Any]:
        manifest = self.manifests.get(prompt, model_id)
        picked = self._small(manifest, max_rows) if manifest else ()
        if len(picked) < 2:
            return {"prompt": prompt, "compacted": 0}
        merged = merge_tables([self.shards.read(k) for k in picked])
        new_key = shard_key(model_id, prompt, run_id, part="compact")
        self.shards.write(new_key, merged)
        self.manifests.update(
            prompt,
            model_id,
            lambda m: (
                m.swapped(tuple(k for k in picked if k in m.shards), new_key, merged.num_rows)
                if any(k in m.shards for k in picked)
                else m
            ),
        )
        self._repoint(merged, picked, new_key)
        for key in picked:
            if key != new_key:
                self.shards.delete(key)
        return {
            "prompt": prompt,
            "compacted": len(picked),
            "rows": merged.num_rows,
            "shard": new_key,
        }

    def _repoint(self, merged: pa.Table, old: tuple[str, ...], new_key: str) -> None:
        client = self.embeddings.client
        for image_id in pc.unique(merged.column("image_id")).to_pylist():
            for old_key in old:
                try:
                    client.update_item(
                        TableName=self.embeddings.table,
                        Key={"embedding_id": {"S": image_id}},
                        UpdateExpression="SET shard_key = :new",
                        ConditionExpression="shard_key = :old",
                        ExpressionAttributeValues={":new": {"S": new_key}, ":old": {"S": old_key}},
                    )
                    break
                except client.exceptions.ConditionalCheckFailedException:
                    continue

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
