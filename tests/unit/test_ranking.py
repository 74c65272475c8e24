from datetime import UTC, datetime

import numpy as np
import pytest

from pipeline.lookup.candidates import ShardData, combine, shard_data
from pipeline.lookup.ranking import exact_scores, rank
from pipeline.storage.shards import ShardRow, rows_table


def _reference(matrix, ids, query, exclude=None, min_score=None):
    scores = exact_scores(matrix, query, np.arange(len(ids)))
    rows = [
        (float(s), str(i))
        for s, i in zip(scores, ids, strict=True)
        if i != exclude and (min_score is None or s >= np.float32(min_score))
    ]
    rows.sort(key=lambda r: (-r[0], r[1]))
    return rows


@pytest.mark.parametrize("seed", range(5))
def test_rank_equals_a_full_sort(seed):
    rng = np.random.default_rng(seed)
    matrix = rng.standard_normal((500, 16)).astype(np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    matrix[100:140] = matrix[7]  # many exact ties, spread over the boundary
    ids = np.asarray([f"img{(i * 7919) % 1000:04d}" for i in range(500)], dtype=object)
    query = matrix[7]
    for limit in (1, 10, 50, 100, 600):
        ranked = rank(matrix, ids, query, limit, exclude=ids[3], min_score=None)
        expected = _reference(matrix, ids, query, exclude=ids[3])[:limit]
        assert list(zip(ranked.scores, ranked.ids, strict=True)) == expected
        assert ranked.total == 499


@pytest.mark.parametrize("seed", range(3))
def test_pages_after_a_position_continue_the_full_sort(seed):
    rng = np.random.default_rng(seed)
    matrix = rng.standard_normal((300, 32)).astype(np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    matrix[50:80] = matrix[9]  # ties that straddle page boundaries
    ids = np.asarray([f"i{(i * 31) % 300:03d}" for i in range(300)], dtype=object)
    expected = _reference(matrix, ids, matrix[9], min_score=-0.2)
    seen, after = [], None
    while True:
        ranked = rank(matrix, ids, matrix[9], 7, min_score=-0.2, after=after)
        assert ranked.total == len(expected) and ranked.remaining == len(expected) - len(seen)
        if not ranked.ids:
            break
        seen += list(zip(ranked.scores, ranked.ids, strict=True))
        after = (ranked.scores[-1], ranked.ids[-1])
    assert seen == expected


def test_a_score_does_not_depend_on_the_rows_place_in_the_matrix():
    """BLAS rounds a row by its position; a keyset cursor needs the same score for the same
    row in another manifest version (rows appended, or reordered by a compaction)."""
    rng = np.random.default_rng(0)
    matrix = rng.standard_normal((1003, 512)).astype(np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    ids = np.asarray([f"r{i:04d}" for i in range(1003)], dtype=object)
    query = matrix[0]
    full = rank(matrix, ids, query, 1003)
    for shift in range(1, 8):
        part = rank(matrix[shift:], ids[shift:], query, 1003)
        assert dict(zip(part.ids, part.scores, strict=True)) == {
            i: s for i, s in zip(full.ids, full.scores, strict=True) if i >= f"r{shift:04d}"
        }


def test_min_score_and_exclusion():
    matrix = np.eye(4, dtype=np.float32)
    ids = np.asarray(["a", "b", "c", "d"], dtype=object)
    ranked = rank(
        matrix, ids, np.asarray([0.8, 0.6, 0, 0], np.float32), 10, exclude="a", min_score=0.5
    )
    assert ranked.ids == ["b"] and ranked.total == 1
    assert rank(matrix, ids, matrix[0], 10, exclude="a", min_score=0.99).ids == []


def test_combine_keeps_the_last_row_of_a_repeated_image():
    def shard(ids, value):
        matrix = np.full((len(ids), 2), value, np.float32)
        return ShardData(
            np.asarray(ids, dtype=object),
            matrix,
            np.asarray([f"k/{i}" for i in ids], dtype=object),
            np.asarray([f"e{value:g}" for _ in ids], dtype=object),
        )

    combined = combine([shard(["a", "b"], 1.0), shard(["b", "c"], 2.0)], version=3)
    assert combined.ids.tolist() == ["a", "b", "c"]
    assert combined.matrix[:, 0].tolist() == [1.0, 2.0, 2.0]
    assert combined.etags.tolist() == ["e1", "e2", "e2"]  # each row keeps its own version
    assert combined.version == 3


def test_rows_of_a_shard_without_etags_are_of_an_unknown_version():
    row = ShardRow("a", np.ones(2, np.float32), datetime(2026, 11, 1, tzinfo=UTC), "k", "e")
    table = rows_table([row], 2, "m", "p")
    assert shard_data(table).etags.tolist() == ["e"]
    assert shard_data(table.drop_columns(["source_etag"])).etags.tolist() == [None]
