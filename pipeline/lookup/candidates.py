"""The candidate matrix of one (prompt, model): every row of the shards its manifest lists,
one row per image (a later shard's row wins), kept in memory across warm invocations.

The cache is keyed by manifest version: an unchanged version costs one GetItem; a new version
reloads only the shards it has not seen (shard keys are written once per run, and a retried
run rewrites the same content), so a new shard or a compaction reads just the new files.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from pipeline.storage.manifests_table import Manifest


@dataclass(frozen=True)
class ShardData:
    ids: np.ndarray  # object array of str
    matrix: np.ndarray  # (rows, dim) float32, C-contiguous
    s3_keys: np.ndarray


@dataclass(frozen=True)
class Candidates:
    version: int
    ids: np.ndarray
    matrix: np.ndarray
    s3_keys: np.ndarray


def shard_data(table: pa.Table) -> ShardData:
    vectors = table.column("embedding").combine_chunks()
    dim = vectors.type.list_size
    matrix = vectors.values.to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    return ShardData(
        ids=table.column("image_id").to_numpy(),
        matrix=np.ascontiguousarray(matrix.reshape(-1, dim)),
        s3_keys=table.column("s3_key").to_numpy(),
    )


def combine(shards: list[ShardData], version: int) -> Candidates:
    """Concatenate in manifest order, keeping the last row of an image seen twice."""
    ids = np.concatenate([s.ids for s in shards])
    matrix = np.concatenate([s.matrix for s in shards]) if len(shards) > 1 else shards[0].matrix
    s3_keys = np.concatenate([s.s3_keys for s in shards])
    _, first_of_reversed = np.unique(ids[::-1], return_index=True)
    if first_of_reversed.size != ids.size:
        keep = np.sort(ids.size - 1 - first_of_reversed)
        ids, matrix, s3_keys = ids[keep], matrix[keep], s3_keys[keep]
    return Candidates(version=version, ids=ids, matrix=matrix, s3_keys=s3_keys)


class CandidateCache:
    def __init__(self, read_shard: Callable[[str], pa.Table]) -> None:
        self._read = read_shard
        self._lock = threading.Lock()
        self._shards: dict[str, ShardData] = {}
        self._combined: dict[tuple[str, str], Candidates] = {}
        self._listed: dict[tuple[str, str], tuple[str, ...]] = {}
        self.hits = 0  # lookups answered from memory, unchanged manifest version
        self.shard_reads = 0  # how many shard files were read, for tests and metrics

    def get(self, manifest: Manifest) -> Candidates:
        key = (manifest.prompt, manifest.model_id)
        with self._lock:
            cached = self._combined.get(key)
            if cached is not None and cached.version == manifest.version:
                self.hits += 1
                return cached
            combined = combine([self._shard(k) for k in manifest.shards], manifest.version)
            self._combined[key] = combined
            self._listed[key] = tuple(manifest.shards)
            live = {k for keys in self._listed.values() for k in keys}
            for stale in set(self._shards) - live:  # e.g. files a compaction replaced
                del self._shards[stale]
            return combined

    def _shard(self, key: str) -> ShardData:
        if key not in self._shards:
            self._shards[key] = shard_data(self._read(key))
            self.shard_reads += 1
        return self._shards[key]
