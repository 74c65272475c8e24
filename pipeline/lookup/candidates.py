"""The candidate matrix of one (prompt, model): every row of the shards its manifest lists,
one row per image (a later shard's row wins), kept in memory across warm invocations.

The cache is keyed by manifest version: an unchanged version costs one GetItem; a new version
reloads only the shards it has not seen (shard keys are written once per run, and a retried
run rewrites the same content), so a new shard or a compaction reads just the new files.

Memory is bounded: each shard's rows are kept as views into its prompt's combined matrix (one
copy, not two), and prompts are evicted least recently used once the cache holds more than
`max_bytes`. A prompt larger than the bound alone is still answered, and kept on its own.
"""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from pipeline.storage.manifests_table import Manifest

# 100k 512-d float32 vectors are about 205 MB: two such prompts and change in a 1 GB function.
DEFAULT_MAX_BYTES = 512 * 1024 * 1024


@dataclass(frozen=True)
class ShardData:
    ids: np.ndarray  # object array of str
    matrix: np.ndarray  # (rows, dim) float32, C-contiguous
    s3_keys: np.ndarray
    etags: np.ndarray  # the object version each vector came from (None: an older shard)


@dataclass(frozen=True)
class Candidates:
    version: int
    ids: np.ndarray
    matrix: np.ndarray
    s3_keys: np.ndarray
    etags: np.ndarray

    @property
    def nbytes(self) -> int:
        """The matrix, and the strings the object arrays point to."""
        strings = sum(
            sum(map(sys.getsizeof, column)) for column in (self.ids, self.s3_keys, self.etags)
        )
        arrays = self.ids.nbytes + self.s3_keys.nbytes + self.etags.nbytes
        return int(self.matrix.nbytes + arrays + strings)


def shard_data(table: pa.Table) -> ShardData:
    vectors = table.column("embedding").combine_chunks()
    dim = vectors.type.list_size
    matrix = vectors.values.to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    return ShardData(
        ids=table.column("image_id").to_numpy(),
        matrix=np.ascontiguousarray(matrix.reshape(-1, dim)),
        s3_keys=table.column("s3_key").to_numpy(),
        etags=(
            table.column("source_etag").to_numpy(zero_copy_only=False)
            if "source_etag" in table.column_names
            else np.full(table.num_rows, None, object)
        ),
    )


def combine(shards: list[ShardData], version: int) -> Candidates:
    """Concatenate in manifest order, keeping the last row of an image seen twice."""
    ids = np.concatenate([s.ids for s in shards])
    matrix = np.concatenate([s.matrix for s in shards]) if len(shards) > 1 else shards[0].matrix
    s3_keys = np.concatenate([s.s3_keys for s in shards])
    etags = np.concatenate([s.etags for s in shards])
    _, first_of_reversed = np.unique(ids[::-1], return_index=True)
    if first_of_reversed.size != ids.size:
        keep = np.sort(ids.size - 1 - first_of_reversed)
        ids, matrix, s3_keys, etags = ids[keep], matrix[keep], s3_keys[keep], etags[keep]
    return Candidates(version=version, ids=ids, matrix=matrix, s3_keys=s3_keys, etags=etags)


class CandidateCache:
    def __init__(
        self, read_shard: Callable[[str], pa.Table], max_bytes: int = DEFAULT_MAX_BYTES
    ) -> None:
        self._read = read_shard
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._shards: dict[str, ShardData] = {}
        self._combined: OrderedDict[tuple[str, str, str], Candidates] = OrderedDict()  # LRU first
        self._sizes: dict[tuple[str, str, str], int] = {}
        self._listed: dict[tuple[str, str, str], tuple[str, ...]] = {}
        self.hits = 0  # lookups answered from memory, unchanged manifest version
        self.shard_reads = 0  # how many shard files were read, for tests and metrics
        self.evictions = 0  # prompts dropped to stay under max_bytes

    @property
    def nbytes(self) -> int:
        return sum(self._sizes.values())

    def get(self, manifest: Manifest, part: str = "all") -> Candidates:
        """The rows of the manifest's shards; `part` names which of the prompt's shards these
        are (all, or those a vector index has not synced), each cached on its own."""
        key = (manifest.prompt, manifest.model_id, part)
        with self._lock:
            cached = self._combined.get(key)
            if cached is not None and cached.version == manifest.version:
                self.hits += 1
                self._combined.move_to_end(key)
                return cached
            shards = [self._shard(k) for k in manifest.shards]
            combined = combine(shards, manifest.version)
            self._combined[key] = combined
            self._combined.move_to_end(key)
            self._sizes[key] = combined.nbytes
            self._listed[key] = tuple(manifest.shards)
            self._share(manifest.shards, shards, combined)
            self._evict(keep=key)
            return combined

    def _share(self, keys: Sequence[str], shards: list[ShardData], combined: Candidates) -> None:
        """Point each shard's rows at the combined matrix, so one copy of the vectors is held.
        When rows were dropped as duplicates the shards cannot be views: they are let go, and
        read again only if a later version still lists them."""
        if len(shards) < 2:
            return
        if sum(len(s.ids) for s in shards) != len(combined.ids):
            for k in keys:
                self._shards.pop(k, None)
            return
        start = 0
        for k, shard in zip(keys, shards, strict=True):
            end = start + len(shard.ids)
            self._shards[k] = ShardData(
                combined.ids[start:end],
                combined.matrix[start:end],
                combined.s3_keys[start:end],
                combined.etags[start:end],
            )
            start = end

    def _evict(self, keep: tuple[str, str, str]) -> None:
        while self.nbytes > self.max_bytes and len(self._combined) > 1:
            oldest = next(iter(self._combined))
            if oldest == keep:
                self._combined.move_to_end(oldest)
                continue
            del self._combined[oldest], self._sizes[oldest], self._listed[oldest]
            self.evictions += 1
        live = {k for keys in self._listed.values() for k in keys}
        for stale in set(self._shards) - live:  # evicted prompts, files a compaction replaced
            del self._shards[stale]

    def _shard(self, key: str) -> ShardData:
        if key not in self._shards:
            self._shards[key] = shard_data(self._read(key))
            self.shard_reads += 1
        return self._shards[key]
