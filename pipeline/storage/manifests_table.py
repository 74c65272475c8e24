"""The ShardManifests table: which shard files hold a (prompt, model)'s vectors, updated with
a compare-and-set on `version` so concurrent runs and compactions never lose an update."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from pipeline import aws
from pipeline.settings import Settings
from pipeline.storage.dynamodb_codec import deserialize_item, serialize_item


@dataclass(frozen=True)
class Manifest:
    prompt: str
    model_id: str
    shards: tuple[str, ...] = ()
    shard_rows: dict[str, int] = field(default_factory=dict)
    version: int = 0

    @property
    def rows(self) -> int:
        return sum(self.shard_rows.get(k, 0) for k in self.shards)

    def with_shard(self, key: str, rows: int) -> Manifest:
        shards = self.shards if key in self.shards else (*self.shards, key)
        return replace(self, shards=shards, shard_rows={**self.shard_rows, key: rows})

    def swapped(self, old: tuple[str, ...], new_key: str, rows: int) -> Manifest:
        """Replace the shards `old` by `new_key` at the position of the first of them."""
        kept = [k for k in self.shards if k not in old]
        position = min(self.shards.index(k) for k in old)
        shards = (*kept[:position], new_key, *kept[position:])
        shard_rows = {k: v for k, v in self.shard_rows.items() if k not in old}
        return replace(self, shards=shards, shard_rows={**shard_rows, new_key: rows})


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

    @staticmethod
    def from_item(raw: Mapping[str, Any]) -> Manifest:
        """A Manifest from a raw (DynamoDB-typed) item, as GetItem or Scan return it."""
        item = deserialize_item(raw)
        return Manifest(
            prompt=item["prompt"],
            model_id=item["model_id"],
            shards=tuple(item.get("shards", [])),
            shard_rows={k: int(v) for k, v in item.get("shard_rows", {}).items()},
            version=int(item["version"]),
        )

    def update(
        self, prompt: str, model_id: str, change: Callable[[Manifest], Manifest], attempts: int = 20
    ) -> Manifest:
        """Apply `change` to the current manifest with a compare-and-set on `version`."""
        for attempt in range(attempts):
            current = self.get(prompt, model_id) or Manifest(prompt=prompt, model_id=model_id)
            new = change(current)
            if new.shards == current.shards and new.shard_rows == current.shard_rows:
                return current
            new = replace(new, version=current.version + 1)
            condition = (
                "attribute_not_exists(prompt)" if current.version == 0 else "version = :version"
            )
            values = {} if current.version == 0 else {":version": {"N": str(current.version)}}
            try:
                self.client.put_item(
                    TableName=self.table,
                    ConditionExpression=condition,
                    **({"ExpressionAttributeValues": values} if values else {}),
                    Item=serialize_item(
                        {
                            "prompt": prompt,
                            "model_id": model_id,
                            "shards": list(new.shards),
                            "shard_rows": new.shard_rows,
                            "rows": new.rows,
                            "version": new.version,
                        }
                    ),
                )
                return new
            except self.client.exceptions.ConditionalCheckFailedException:
                time.sleep(0.01 * (attempt + 1))
        raise ConcurrentUpdate(f"manifest {prompt!r}/{model_id} changed {attempts} times in a row")
