"""The warm candidate cache: one copy of each prompt's vectors, and a memory bound across
prompts (least recently used out first). Shards are real Arrow tables read through the same
seam the lookup uses."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from pipeline.lookup.candidates import CandidateCache
from pipeline.storage.manifests_table import Manifest

DIM = 64


def _table(prefix: str, rows: int) -> pa.Table:
    vectors = np.random.default_rng(len(prefix) + rows).random((rows, DIM), dtype=np.float32)
    embedding = pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), DIM)
    ids = [f"{prefix}-{i:05d}" for i in range(rows)]
    return pa.table({"image_id": ids, "embedding": embedding, "s3_key": [f"k/{i}" for i in ids]})


class Shards:
    def __init__(self, tables: dict[str, pa.Table]) -> None:
        self.tables, self.reads = tables, []

    def __call__(self, key: str) -> pa.Table:
        self.reads.append(key)
        return self.tables[key]


def _manifest(prompt: str, shards: list[str], version: int = 1) -> Manifest:
    return Manifest(prompt=prompt, model_id="m", shards=tuple(shards), version=version)


def test_shards_are_held_once_as_views_of_the_combined_matrix():
    shards = Shards({f"a/{i}": _table(f"a{i}", 1000) for i in range(3)})
    cache = CandidateCache(shards)
    combined = cache.get(_manifest("a", ["a/0", "a/1", "a/2"]))
    assert combined.matrix.shape == (3000, DIM)
    held = cache._shards.values()
    assert all(np.shares_memory(s.matrix, combined.matrix) for s in held)
    # a new shard reads just that file, and the answer is the same rows plus the new ones
    shards.tables["a/3"] = _table("a3", 10)
    newer = cache.get(_manifest("a", ["a/0", "a/1", "a/2", "a/3"], version=2))
    assert shards.reads == ["a/0", "a/1", "a/2", "a/3"]
    assert np.array_equal(newer.matrix[:3000], combined.matrix)


def test_prompts_are_evicted_least_recently_used_beyond_the_bound():
    tables = {f"{p}/0": _table(p, 2000) for p in "abc"}
    one_prompt = CandidateCache(Shards(tables)).get(_manifest("a", ["a/0"])).nbytes
    shards = Shards(tables)
    cache = CandidateCache(shards, max_bytes=int(2.5 * one_prompt))
    for prompt in "abac":  # "a" is used again before "c" arrives: "b" is the one to go
        cache.get(_manifest(prompt, [f"{prompt}/0"]))
    assert cache.nbytes <= cache.max_bytes and cache.evictions == 1
    assert cache.hits == 1
    cache.get(_manifest("a", ["a/0"]))  # still warm
    cache.get(_manifest("b", ["b/0"]))  # evicted: read again
    assert shards.reads == ["a/0", "b/0", "c/0", "b/0"] and cache.hits == 2
    assert cache.nbytes <= cache.max_bytes


def test_a_prompt_larger_than_the_bound_is_still_answered_and_kept_alone():
    shards = Shards({"a/0": _table("a", 3000), "b/0": _table("b", 10)})
    cache = CandidateCache(shards, max_bytes=1000)
    cache.get(_manifest("b", ["b/0"]))
    big = cache.get(_manifest("a", ["a/0"]))
    assert big.matrix.shape == (3000, DIM)
    assert list(cache._combined) == [("a", "m", "all")] and cache.evictions == 1
