"""The ShardManifests table: which shard files hold a (prompt, model)'s vectors, updated with
a compare-and-set on `version` so concurrent runs and compactions never lose an update."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from pipeline import aws
from pipeline.settings import Settings
from pipeline.storage.dynamodb_codec import deserialize_item, serialize_item
from pipeline.storage.manifest_item import (
    COMPACT_AT_BYTES,
    ITEM_LIMIT_BYTES,
    TOMBSTONE_BYTES,
    ManifestTooLarge,
    item_bytes,
    read_shards,
    shard_attributes,
)

# The sort key of a prompt's active-model pointer, an item of this table beside the prompt's
# manifests (pipeline.storage.active_models): never a manifest, so every reader skips it.
ACTIVE_KEY = "@active"


def is_pointer(raw: Mapping[str, Any]) -> bool:
    """The raw (DynamoDB-typed) item is a prompt's active-model pointer, not a manifest."""
    return bool(raw["model_id"]["S"] == ACTIVE_KEY)


@dataclass(frozen=True)
class Manifest:
    prompt: str
    model_id: str
    shards: tuple[str, ...] = ()
    shard_rows: dict[str, int] = field(default_factory=dict)
    version: int = 0
    # Deleted images whose rows a listed shard may still hold: lookups skip them at once,
    # compaction drops the rows and then the ids (pipeline.deletion.deleter).
    tombstones: frozenset[str] = frozenset()
    # The vector index (pipeline.index_sync): the table that holds the rows of every listed
    # shard but `pending` (None: no index, the exact scan answers), and the rows it holds.
    # A commit's shard is pending until the sync has upserted it; compaction never merges a
    # pending shard with an indexed one, so the index's coverage survives it.
    index_table: str | None = None
    pending: tuple[str, ...] = ()
    index_rows: int = 0
    # Deletions past the tombstones' room in the item (TOMBSTONE_BYTES): their ids are not
    # kept, so compaction finds their rows by the Images records instead (a replayed
    # deletion may count twice: only "more than none" is acted on).
    deleted_unlisted: int = 0
    # The listed row created last: (image_id, created_at), as its commit wrote it. GET /prompts
    # shows it, once its record says it is still embedded, without querying the prompt's
    # images (None: listed before commits noted it, or never by a commit).
    newest: tuple[str, str] | None = None

    @property
    def rows(self) -> int:
        return sum(self.shard_rows.get(k, 0) for k in self.shards)

    @property
    def live_rows(self) -> int:
        """The rows less the deleted images' (one row each until compaction drops it): what
        GET /prompts counts, so a deleted image is not counted from its deletion on."""
        return max(self.rows - len(self.tombstones) - self.deleted_unlisted, 0)

    @property
    def item_bytes(self) -> int:
        """The size of this manifest's item as DynamoDB counts it."""
        return item_bytes(to_item(self))

    @property
    def compaction_due(self) -> bool:
        """Past the tombstones' room, or large enough that waiting for the daily compaction
        would bring the item near DynamoDB's limit: compact now."""
        return self.deleted_unlisted > 0 or self.item_bytes > COMPACT_AT_BYTES

    def with_shard(
        self,
        key: str,
        rows: int,
        ids: Iterable[str],
        newest: tuple[str, str] | None = None,
    ) -> Manifest:
        """The shard `key` listed last, holding the rows of `ids`: those ids leave the
        tombstones (an image deleted, then uploaded again under its key, gets the same id).
        Sound because the new shard is last, so its row wins over any older row of the id; an
        image deleted while the shard was made is tombstoned again after the commit.
        `newest`: the shard's row created last, kept if it is later than the manifest's."""
        shards = self.shards if key in self.shards else (*self.shards, key)
        pending = self.pending
        if self.index_table is not None and key not in pending:
            pending = (*pending, key)  # a retried commit's rows may differ: synced again
        return replace(
            self,
            shards=shards,
            shard_rows={**self.shard_rows, key: rows},
            tombstones=self.tombstones - frozenset(ids),
            pending=pending,
            newest=later(self.newest, newest),
        )

    def with_tombstones(self, image_ids: frozenset[str]) -> Manifest:
        """The ids tombstoned while the tombstones take at most TOMBSTONE_BYTES of the item;
        the rest counted in `deleted_unlisted`, so a deletion never fails for the item's
        size (lookups hide a deleted image by its record either way)."""
        new = sorted(image_ids - self.tombstones)
        room = TOMBSTONE_BYTES - tombstone_bytes(self.tombstones)
        kept = []
        for image_id in new:
            cost = 1 + len(image_id.encode("utf-8"))
            if cost > room:
                break
            kept.append(image_id)
            room -= cost
        return replace(
            self,
            tombstones=self.tombstones | frozenset(kept),
            deleted_unlisted=self.deleted_unlisted + len(new) - len(kept),
        )

    @property
    def indexed_shards(self) -> tuple[str, ...]:
        """The listed shards whose rows the index holds (none without an index)."""
        if self.index_table is None:
            return ()
        return tuple(k for k in self.shards if k not in self.pending)

    @property
    def unindexed_shards(self) -> tuple[str, ...]:
        """The listed shards the exact scan covers: all of them without an index."""
        if self.index_table is None:
            return self.shards
        return tuple(k for k in self.shards if k in self.pending)

    def indexed(self, table: str | None, synced: Iterable[str], rows: int) -> Manifest:
        """The index `table` holds the rows of the shards `synced` (those still listed) and
        `rows` rows in all; a shard listed since stays pending. `table` None: no index."""
        if table is None:
            return replace(self, index_table=None, pending=(), index_rows=0)
        done = frozenset(synced)
        base = self.pending if table == self.index_table else self.shards
        pending = tuple(k for k in base if k in self.shards and k not in done)
        return replace(self, index_table=table, pending=pending, index_rows=rows)


class ConcurrentUpdate(RuntimeError):
    """A manifest kept changing under us: give up rather than lose an update."""


class ManifestStore(aws.Adapter):
    """ShardManifests: (prompt, model_id) -> ordered shard keys, updated with a version check."""

    service = "dynamodb"

    def __init__(self, settings: Settings, client: Any | None = None) -> None:
        super().__init__(settings, client)
        self.table = settings.shard_manifests_table

    def get(self, prompt: str, model_id: str) -> Manifest | None:
        response = self.client.get_item(
            TableName=self.table,
            ConsistentRead=True,
            Key={"prompt": {"S": prompt}, "model_id": {"S": model_id}},
        )
        return self.from_item(response["Item"]) if "Item" in response else None

    def of_prompt(self, prompt: str) -> list[Manifest]:
        """Every model's manifest of one prompt (its active-model pointer is not one)."""
        return [self.from_item(raw) for raw in self.prompt_items(prompt)]

    def prompt_items(self, prompt: str) -> Iterator[dict[str, Any]]:
        """The raw manifest items of one prompt: a consistent Query on the partition key, every
        page, the active-model pointer left out. The one reader of a whole partition."""
        pages = self.client.get_paginator("query").paginate(
            TableName=self.table,
            ConsistentRead=True,
            KeyConditionExpression="prompt = :p",
            ExpressionAttributeValues={":p": {"S": prompt}},
        )
        for page in pages:
            yield from (raw for raw in page.get("Items", []) if not is_pointer(raw))

    @staticmethod
    def from_item(raw: Mapping[str, Any]) -> Manifest:
        """A Manifest from a raw (DynamoDB-typed) item, as GetItem or Scan return it: either
        layout (pipeline.storage.manifest_item), keys always whole."""
        item = deserialize_item(raw)
        shards, shard_rows, pending = read_shards(item)
        return Manifest(
            prompt=item["prompt"],
            model_id=item["model_id"],
            shards=shards,
            shard_rows=shard_rows,
            version=int(item["version"]),
            tombstones=frozenset(item.get("tombstones", [])),
            index_table=item.get("index_table") or None,
            pending=pending,
            index_rows=int(item.get("index_rows", 0)),
            deleted_unlisted=int(item.get("deleted_unlisted", 0)),
            newest=(item["newest_id"], item["newest_at"]) if "newest_id" in item else None,
        )

    def update(
        self, prompt: str, model_id: str, change: Callable[[Manifest], Manifest], attempts: int = 20
    ) -> Manifest:
        """Apply `change` to the current manifest with a compare-and-set on `version`."""
        for attempt in range(attempts):
            current = self.get(prompt, model_id) or Manifest(prompt=prompt, model_id=model_id)
            new = change(current)
            if _content(new) == _content(current):
                return current
            new = replace(new, version=current.version + 1)
            condition = (
                "attribute_not_exists(prompt)" if current.version == 0 else "version = :version"
            )
            values = {} if current.version == 0 else {":version": {"N": str(current.version)}}
            item = to_item(new)
            size = item_bytes(item)
            if size > ITEM_LIMIT_BYTES:
                raise ManifestTooLarge(
                    f"manifest {prompt!r}/{model_id} would take {size} bytes with "
                    f"{len(new.shards)} shards (DynamoDB allows {ITEM_LIMIT_BYTES}): run the "
                    "compact_shards DAG"
                )
            try:
                self.client.put_item(
                    TableName=self.table,
                    ConditionExpression=condition,
                    **({"ExpressionAttributeValues": values} if values else {}),
                    Item=item,
                )
                return new
            except self.client.exceptions.ConditionalCheckFailedException:
                time.sleep(0.01 * (attempt + 1))
        raise ConcurrentUpdate(f"manifest {prompt!r}/{model_id} changed {attempts} times in a row")


def _content(manifest: Manifest) -> tuple[Any, ...]:
    """Everything an update may change (not the version)."""
    return (
        manifest.shards,
        manifest.shard_rows,
        manifest.tombstones,
        manifest.index_table,
        manifest.pending,
        manifest.index_rows,
        manifest.deleted_unlisted,
        manifest.newest,
    )


def later(a: tuple[str, str] | None, b: tuple[str, str] | None) -> tuple[str, str] | None:
    """Of two (image_id, created_at), the one created later (ties: the greater id). Pure."""
    if a is None or b is None:
        return a or b
    return max(a, b, key=lambda n: (n[1], n[0]))


def to_item(manifest: Manifest) -> dict[str, Any]:
    """The typed item of a manifest (pipeline.storage.manifest_item: relative shard names,
    counts beside them, pending positions; the index's attributes only with an index, the
    unlisted deletions only when there are some). Pure."""
    indexed = manifest.index_table is not None
    plain: dict[str, Any] = {
        "prompt": manifest.prompt,
        "model_id": manifest.model_id,
        **shard_attributes(
            manifest.model_id,
            manifest.prompt,
            manifest.shards,
            manifest.shard_rows,
            manifest.pending if indexed else None,
        ),
        "version": manifest.version,
        "tombstones": sorted(manifest.tombstones),
    }
    if indexed:
        plain.update(index_table=manifest.index_table, index_rows=manifest.index_rows)
    if manifest.deleted_unlisted:
        plain["deleted_unlisted"] = manifest.deleted_unlisted
    if manifest.newest is not None:
        plain.update(newest_id=manifest.newest[0], newest_at=manifest.newest[1])
    return serialize_item(plain)


def tombstone_bytes(tombstones: frozenset[str]) -> int:
    """What the tombstones' list takes in the item, its name included."""
    return len("tombstones") + 3 + sum(1 + len(t.encode("utf-8")) for t in tombstones)
