"""What one compaction does to a manifest: pure decisions, no I/O.

A batch is a run of consecutive listed shards (manifest order, nothing listed between them) of
one group (what a vector index holds, or what it has not synced: never mixed) that becomes new
shards of at most `max_rows` rows each, written in its place:

* consecutive shards smaller than `max_rows` are packed in order into batches of at most
  `max_rows` rows; a batch of one is left alone unless it holds a deleted row;
* a shard of `max_rows` rows or more is rewritten alone, only when it holds a deleted row.

Consecutive only: where shards disagree (an image re-embedded), the row of the later shard
wins, and a merged shard in the place of consecutive ones keeps every other shard's order
relative to them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from pipeline.storage.manifests_table import Manifest


@dataclass(frozen=True)
class Batch:
    shards: tuple[str, ...]
    rows: int  # the listed rows of its shards
    big: bool  # one shard of max_rows rows or more, rewritten alone in row groups


def groups(manifest: Manifest) -> list[tuple[str, ...]]:
    """The shard groups compaction never merges together: with a vector index, what it holds
    then what is pending; without, every shard."""
    found = [manifest.indexed_shards, manifest.unindexed_shards]
    return [g for g in found if g]


def batches(
    manifest: Manifest,
    group: tuple[str, ...],
    max_rows: int,
    holders: Mapping[str, frozenset[str]] | None = None,
) -> list[Batch]:
    """The batches of `group` worth writing. `holders`: for each listed shard, the deleted
    ids it holds (None: not looked at, so only merges of two or more small shards)."""
    members = frozenset(group)
    holds = holders or {}
    found: list[Batch] = []
    current: list[str] = []
    rows = 0

    def close() -> None:
        nonlocal current, rows
        if len(current) >= 2 or any(holds.get(k) for k in current):
            found.append(Batch(tuple(current), rows, big=False))
        current, rows = [], 0

    for key in manifest.shards:
        count = manifest.shard_rows.get(key, 0)
        if key not in members or count >= max_rows:
            close()
            if key in members and holds.get(key):
                found.append(Batch((key,), count, big=True))
            continue
        if rows + count > max_rows:
            close()
        current.append(key)
        rows += count
    close()
    return found


def mergeable(manifest: Manifest, max_rows: int) -> bool:
    """Whether some group has two or more consecutive small shards to merge (no I/O)."""
    return any(batches(manifest, group, max_rows) for group in groups(manifest))


def replaced(m: Manifest, old: tuple[str, ...], new: tuple[tuple[str, int], ...]) -> Manifest:
    """The shards `old` (still listed) replaced by `new` ((key, rows), in order) at the
    place of the first of them; pending if any of `old` was. `m` unchanged once none of
    `old` is listed (a retried swap)."""
    gone = [k for k in old if k in m.shards]
    if not gone:
        return m
    new_keys = tuple(k for k, _ in new)
    position = sum(1 for k in m.shards[: m.shards.index(gone[0])] if k not in new_keys)
    kept = [k for k in m.shards if k not in gone and k not in new_keys]
    shards = (*kept[:position], *new_keys, *kept[position:])
    shard_rows = {k: v for k, v in m.shard_rows.items() if k in shards and k not in new_keys}
    pending = tuple(k for k in m.pending if k not in gone and k not in new_keys)
    if m.index_table is not None and any(k in m.pending for k in gone):
        pending = (*pending, *new_keys)
    return replace(m, shards=shards, shard_rows={**shard_rows, **dict(new)}, pending=pending)


def settled(
    m: Manifest,
    known: Mapping[str, frozenset[str]],
    tombstones: frozenset[str],
    unlisted: int,
) -> Manifest:
    """After the rewrites: the `tombstones` (those compaction dropped) cleared, and the
    `unlisted` deletions it looked up uncounted, where every listed shard is `known` (its
    deleted ids looked at, or a rewrite's output: none) and none holds them any more. A shard
    listed meanwhile (a run's commit) may hold any of them: then nothing is cleared."""
    if any(k not in known for k in m.shards):
        return m
    held = frozenset().union(*(known[k] for k in m.shards))
    clear = (m.tombstones & tombstones) - held
    counted = m.deleted_unlisted if held - tombstones else max(m.deleted_unlisted - unlisted, 0)
    return replace(m, tombstones=m.tombstones - clear, deleted_unlisted=counted)
