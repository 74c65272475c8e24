"""bench/scale_index.py's pure parts: the clustered data its recall depends on, the COPY rows
it streams, the quality it reports, and the embedding cache that makes a second run free."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "scale_index.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("scale_index_bench", BENCH)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_clustered_vectors_are_unit_and_near_their_centers(bench):
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((4, 512), dtype=np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    vectors = bench.clustered(rng, centers, 2_000, 0.5, chunk=300)
    assert vectors.shape == (2_000, 512) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    nearest = (vectors @ centers.T).max(axis=1)
    # noise of norm about sigma: cosine to its center about 1 / sqrt(1 + sigma^2) = 0.894
    assert nearest.min() > 0.85 and nearest.max() < 0.94
    assert abs(float(np.median(nearest)) - 1 / np.sqrt(1.25)) < 0.01
    # every cluster is used, roughly evenly
    counts = np.bincount((vectors @ centers.T).argmax(axis=1), minlength=4)
    assert counts.min() > 400


def _parse_copy(stream: bytes, dim: int) -> list[tuple[int, bytes, np.ndarray]]:
    """PostgreSQL's binary COPY format, read field by field (independently of the bench's
    fixed-size record)."""
    assert stream.startswith(b"PGCOPY\n\xff\r\n\x00")
    pos, rows = 19, []
    while True:
        ncols = int.from_bytes(stream[pos : pos + 2], "big", signed=True)
        pos += 2
        if ncols == -1:
            assert pos == len(stream)
            return rows
        assert ncols == 3
        fields = []
        for _ in range(3):
            size = int.from_bytes(stream[pos : pos + 4], "big")
            fields.append(stream[pos + 4 : pos + 4 + size])
            pos += 4 + size
        ident = int.from_bytes(fields[0], "big", signed=True)
        assert int.from_bytes(fields[2][:2], "big") == dim and fields[2][2:4] == b"\0\0"
        rows.append((ident, fields[1], np.frombuffer(fields[2][4:], ">f4")))


def test_streamed_copy_chunks_make_one_valid_binary_copy(bench):
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((5, 7), dtype=np.float32)
    prompts = np.array([b"big", b"sml", b"big", b"big", b"sml"], dtype="S3")
    stream = (
        bench.COPY_HEADER
        + bench.copy_rows(vectors[:2], prompts[:2], 0)
        + bench.copy_rows(vectors[2:], prompts[2:], 2)
        + bench.COPY_TRAILER
    )
    assert stream == bench.copy_binary(vectors, prompts)
    rows = _parse_copy(stream, 7)
    assert [r[0] for r in rows] == [0, 1, 2, 3, 4]
    assert [r[1] for r in rows] == list(prompts)
    np.testing.assert_array_equal(np.stack([r[2] for r in rows]), vectors)


def test_quality_counts_overlap_and_identical_order(bench):
    truth = [list(range(10)), list(range(10, 20))]
    got = [list(range(10)), [11, 10, *range(12, 19), 99]]  # swapped, and one miss
    q = bench.quality(got, truth)
    assert q["recall@10"] == pytest.approx((1 + 0.9) / 2)
    assert q["identical_top10"] == 0.5
    assert bench.quality([[1, 2, 3], list(range(10))], truth[:1] * 2)["mean_rows"] == 6.5
    with pytest.raises(ValueError):
        bench.quality(got[:1], truth)


def test_exact_answers_are_the_brute_force_top_10(bench):
    rng = np.random.default_rng(2)
    matrix = rng.standard_normal((300, 16), dtype=np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    queries = matrix[:3] + 0.01
    answers, times = bench.exact_answers(matrix, queries)
    assert len(times) == 3
    for query, answer in zip(queries, answers, strict=True):
        assert answer == list(np.argsort(-(matrix @ query), kind="stable")[:10])


def test_embedding_cache_computes_once(bench, tmp_path):
    path = tmp_path / "cache" / "set-model-key-digest.npz"
    calls = []

    def compute():
        calls.append(1)
        return np.arange(6, dtype=np.float32).reshape(3, 2), ["a", "b", "a"]

    vectors, labels, computed = bench.cached(path, compute)
    assert computed and path.exists() and not list(path.parent.glob("*.partial"))
    again, labels_again, computed_again = bench.cached(path, compute)
    assert not computed_again and len(calls) == 1
    np.testing.assert_array_equal(again, vectors)
    assert labels_again == labels == ["a", "b", "a"]


def test_data_digest_follows_the_idx_files(bench, tmp_path):
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"one")
    (tmp_path / "notes.txt").write_bytes(b"ignored")
    first = bench.data_digest(tmp_path)
    (tmp_path / "notes.txt").write_bytes(b"changed")
    assert bench.data_digest(tmp_path) == first
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"two")
    assert bench.data_digest(tmp_path) != first
