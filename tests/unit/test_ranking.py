import numpy as np
import pytest

from pipeline.lookup.candidates import ShardData, combine
from pipeline.lookup.ranking import rank


def _reference(matrix, ids, query, exclude=None, min_score=None):
    scores = matrix @ query
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
            np.asarray(ids, dtype=object), matrix, np.asarray([f"k/{i}" for i in ids], dtype=object)
        )

    combined = combine([shard(["a", "b"], 1.0), shard(["b", "c"], 2.0)], version=3)
    assert combined.ids.tolist() == ["a", "b", "c"]
    assert combined.matrix[:, 0].tolist() == [1.0, 2.0, 2.0]
    assert combined.version == 3
