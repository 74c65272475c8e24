"""A manifest as one ShardManifests item, and the item's size by DynamoDB's rules.

The item must stay under DynamoDB's 400 KB limit however large the prompt, so it holds only
what grows slowly: each shard's name relative to its (model, prompt) folder (the folder is
derived from the item's own keys), the row counts as a list beside the names, the index's
pending shards as positions in that list, and the tombstones up to `TOMBSTONE_BYTES`
(`Manifest.with_tombstones` counts the deletions past that instead). Items written with full
keys, a `shard_rows` map, a `rows` total or pending keys are still read.

Worst case (docs/design.md, Storage): `MAX_FIXED_BYTES` for the keys and scalars,
`TOMBSTONE_BYTES` of tombstones, and `MAX_SHARD_BYTES` per listed shard; compaction is due
past `COMPACT_AT_BYTES`, long before the limit.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from pipeline.storage.keys import MAX_SHARD_NAME_CHARS, shard_prefix

ITEM_LIMIT_BYTES = 400 * 1024  # DynamoDB's item limit, names and values together
TOMBSTONE_BYTES = 64 * 1024  # the tombstones' share: past it, deletions are counted
COMPACT_AT_BYTES = 160 * 1024  # a manifest this large is due for compaction at once
# Keys (DynamoDB allows a partition key of 2048 bytes and a sort key of 1024), the version,
# the index table's name (a PostgreSQL identifier: 63 bytes) and counts, the newest row (an
# image id of up to 128 characters and a timestamp), the lists' names and overheads: 3,431
# bytes at most.
MAX_FIXED_BYTES = 4 * 1024
# One listed shard at most: its name (+1 list element), its row count (a number of up to 10
# digits, +1) and its pending position (up to 5 digits, +1).
MAX_SHARD_BYTES = (MAX_SHARD_NAME_CHARS + 1) + (1 + 5 + 1) + (1 + 3 + 1)


def worst_case_shards() -> int:
    """How many shards an item always has room for, with full tombstones and the longest
    keys and names: what commits can add between two compactions before the limit."""
    return (ITEM_LIMIT_BYTES - MAX_FIXED_BYTES - TOMBSTONE_BYTES) // MAX_SHARD_BYTES


class ManifestTooLarge(RuntimeError):
    """An update would write a manifest item over DynamoDB's limit: compact the prompt."""


def value_bytes(value: Mapping[str, Any]) -> int:
    """The size DynamoDB counts for one typed attribute value (without its name)."""
    (kind, inner), *_ = value.items()
    if kind == "S":
        return len(inner.encode("utf-8"))
    if kind == "N":
        return number_bytes(inner)
    if kind == "B":
        return len(inner)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(s.encode("utf-8")) for s in inner)
    if kind == "NS":
        return sum(number_bytes(n) for n in inner)
    if kind == "BS":
        return sum(len(b) for b in inner)
    if kind == "L":
        return 3 + sum(1 + value_bytes(v) for v in inner)
    if kind == "M":
        return 3 + sum(1 + len(k.encode("utf-8")) + value_bytes(v) for k, v in inner.items())
    raise ValueError(f"not a DynamoDB attribute value: {kind!r}")


def number_bytes(text: str) -> int:
    """1 byte per two significant digits, plus 1 (DynamoDB's rule for numbers)."""
    digits = Decimal(text).normalize().as_tuple().digits
    return (len(digits) + 1) // 2 + 1


def item_bytes(item: Mapping[str, Mapping[str, Any]]) -> int:
    """The size of a typed item as DynamoDB counts it against its 400 KB limit: each
    attribute's name (UTF-8) and value; lists and maps add 3 bytes and 1 per element."""
    return sum(len(name.encode("utf-8")) + value_bytes(v) for name, v in item.items())


def relative(key: str, prefix: str) -> str:
    """A listed shard's name as stored: relative to its folder (a key elsewhere stays whole)."""
    return key[len(prefix) :] if key.startswith(prefix) else key


def absolute(name: str, prefix: str) -> str:
    """A stored shard name as its S3 key: names without a folder are in `prefix`."""
    return name if "/" in name else prefix + name


def shard_attributes(
    model_id: str,
    prompt: str,
    shards: tuple[str, ...],
    shard_rows: Mapping[str, int],
    pending: tuple[str, ...] | None,
) -> dict[str, Any]:
    """`shards` (relative names), `shard_rows` (counts, in the same order) and, with an
    index, `pending` (positions in `shards`). Pure."""
    prefix = shard_prefix(model_id, prompt)
    position = {key: n for n, key in enumerate(shards)}
    unlisted = [key for key in pending or () if key not in position]
    if unlisted:
        raise ValueError(f"pending shards are not listed: {unlisted}")
    out: dict[str, Any] = {
        "shards": [relative(k, prefix) for k in shards],
        "shard_rows": [int(shard_rows.get(k, 0)) for k in shards],
    }
    if pending is not None:
        out["pending"] = [position[k] for k in pending]
    return out


def read_shards(
    item: Mapping[str, Any],
) -> tuple[tuple[str, ...], dict[str, int], tuple[str, ...]]:
    """The listed keys, their row counts and the pending keys of a deserialized item, in
    either layout (full keys and a `shard_rows` map, or relative names and lists). Pure."""
    prefix = shard_prefix(item["model_id"], item["prompt"])
    shards = tuple(absolute(name, prefix) for name in item.get("shards", []))
    counts = item.get("shard_rows", {})
    if isinstance(counts, Mapping):
        rows = {absolute(k, prefix): int(v) for k, v in counts.items()}
    else:
        rows = {k: int(v) for k, v in zip(shards, counts, strict=True)}
    pending = tuple(
        shards[int(p)] if not isinstance(p, str) else absolute(p, prefix)
        for p in item.get("pending", [])
    )
    return shards, rows, pending
