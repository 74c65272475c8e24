"""Build and sync the vector index of a (prompt, model) from its shards, the record.

A build loads every listed shard into a new table, builds its HNSW index, and only then names
the table in the manifest (a compare-and-set): lookups use the exact scan until the switch, and
the shards listed meanwhile stay pending. A sync upserts the pending shards' rows and removes
deleted images' rows, then takes the shards it upserted off the pending list. After copying,
both read the manifest's tombstones again and remove those images' rows, so a deletion that
lands mid-copy leaves no row in the table they count and name. Both are idempotent (rows
are upserted by image and object version), so a retried task does no harm; a shard a
compaction merged away meanwhile leaves its merged shard pending, synced next time.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pipeline.index_sync.plan import Target, action, targets
from pipeline.settings import Settings
from pipeline.storage.data_api import DataApi
from pipeline.storage.manifests_table import Manifest, ManifestStore, is_pointer
from pipeline.storage.shards import ShardStore
from pipeline.storage.vector_index import (
    VectorIndex,
    index_rows,
    pair_digest,
    table_name,
    table_parts,
)

SHARD_COLUMNS = ["image_id", "embedding", "s3_key", "source_etag"]


@dataclass(frozen=True)
class SyncResult:
    prompt: str
    model_id: str
    action: str
    table: str | None
    shards: int  # shards whose rows were upserted
    rows_sent: int
    deleted: int  # deleted images whose rows were removed
    index_rows: int

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class IndexSync:
    def __init__(
        self,
        settings: Settings,
        manifests: ManifestStore | None = None,
        shards: ShardStore | None = None,
        index: VectorIndex | None = None,
    ) -> None:
        self.settings = settings
        self.manifests = manifests or ManifestStore(settings)
        self.shards = shards or ShardStore(settings)
        self.index = index or VectorIndex(DataApi(settings))

    def plan(
        self, prompt: str | None = None, model_id: str | None = None, rebuild: bool = False
    ) -> list[Target]:
        """What to do, for every (prompt, model) or the named ones."""
        if prompt is not None:
            found = self.manifests.of_prompt(prompt)
        else:
            found = list(self._all_manifests())
        return targets(found, self.settings.vector_index_threshold, prompt, model_id, rebuild)

    def _all_manifests(self) -> Iterable[Manifest]:
        pages = self.manifests.client.get_paginator("scan").paginate(TableName=self.manifests.table)
        for page in pages:
            for item in page.get("Items", []):
                if not is_pointer(item):
                    yield ManifestStore.from_item(item)

    def run(self, target: Target) -> SyncResult:
        self.index.prepare_database()
        if target.action == "build":
            return self.build(target.prompt, target.model_id)
        return self.sync(target.prompt, target.model_id)

    def ensure_index(self, prompt: str, model_id: str) -> SyncResult | None:
        """Build the pair's index now if it needs one: a model upgrade points a large prompt
        at its new model only once that model's index can answer (not by a scan of a whole
        prompt in the API function's memory)."""
        manifest = self.manifests.get(prompt, model_id)
        if manifest is None or action(manifest, self.settings.vector_index_threshold) != "build":
            return None
        self.index.prepare_database()
        return self.build(prompt, model_id)

    def build(self, prompt: str, model_id: str) -> SyncResult:
        """A new table of every listed shard, switched to once its index is built."""
        snapshot = self.manifests.get(prompt, model_id)
        if snapshot is None or not snapshot.shards:
            return SyncResult(prompt, model_id, "build", None, 0, 0, 0, 0)
        table = table_name(prompt, model_id, snapshot.version)
        sent = self._load(table, snapshot.shards, snapshot.tombstones, create=True)
        self.index.build_index(table)
        self.index.delete(table, self._deleted_since(snapshot) - snapshot.tombstones)
        rows = self.index.count(table)
        old = snapshot.index_table
        self.manifests.update(prompt, model_id, lambda m: m.indexed(table, snapshot.shards, rows))
        if old is not None and old != table:
            self.index.drop(old)
        return SyncResult(
            prompt,
            model_id,
            "build",
            table,
            len(snapshot.shards),
            sent,
            len(snapshot.tombstones),
            rows,
        )

    def sync(self, prompt: str, model_id: str) -> SyncResult:
        """The pending shards upserted, deleted images' rows removed, the pending list cut."""
        snapshot = self.manifests.get(prompt, model_id)
        if snapshot is None or snapshot.index_table is None:
            return SyncResult(prompt, model_id, "sync", None, 0, 0, 0, 0)
        table, pending = snapshot.index_table, snapshot.pending
        sent = self._load(table, pending, snapshot.tombstones, create=False)
        deleted = self._deleted_since(snapshot)
        self.index.delete(table, deleted)
        rows = self.index.count(table)

        def synced(m: Manifest) -> Manifest:
            return m.indexed(table, pending, rows) if m.index_table == table else m

        self.manifests.update(prompt, model_id, synced)
        return SyncResult(prompt, model_id, "sync", table, len(pending), sent, len(deleted), rows)

    def drop_orphans(self) -> list[str]:
        """Drop the tables no manifest can name again: those of a (prompt, model) that has no
        manifest any more (a retired model), and older generations than the one a manifest
        names (a rebuild stopped between its switch and its drop). A table being built is
        newer than the one named, or of a manifest that names none yet: it is kept."""
        named: dict[str, int] = {}  # pair digest -> generation named (-1: none yet)
        for m in self._all_manifests():
            generation = table_parts(m.index_table)[1] if m.index_table else -1
            key = pair_digest(m.prompt, m.model_id)
            named[key] = max(named.get(key, -1), generation)
        dropped = []
        for table in self.index.tables():
            digest, generation = table_parts(table)
            if digest not in named or generation < named[digest]:
                self.index.drop(table)
                dropped.append(table)
        return dropped

    def _deleted_since(self, snapshot: Manifest) -> frozenset[str]:
        """The snapshot's tombstones and those of the manifest now, read after the rows were
        copied: an image deleted while they were copied (after the snapshot) loses the row
        the copy gave it before the table is counted and named."""
        latest = self.manifests.get(snapshot.prompt, snapshot.model_id)
        return snapshot.tombstones | (latest.tombstones if latest is not None else frozenset())

    def _load(
        self, table: str, keys: tuple[str, ...], tombstones: frozenset[str], create: bool
    ) -> int:
        """Upsert the rows of `keys` in manifest order (a later shard's row wins), leaving
        out deleted images."""
        sent = 0
        for key in keys:
            shard = self.shards.read(key, SHARD_COLUMNS)
            if create:
                self.index.create_table(table, shard.column("embedding").type.list_size)
                create = False
            rows = (r for r in index_rows(shard) if r.image_id not in tombstones)
            sent += self.index.upsert(table, rows)
        return sent
