"""The evaluation harness's pure parts: metrics on a hand-checked case, seeded stratified
splits, and the IDX and labelled-folder loaders on files the tests write."""

from __future__ import annotations

import gzip
import io
import struct

import numpy as np
import pytest
from PIL import Image

from pipeline.evaluate.datasets import (
    load_dataset,
    load_folder,
    read_idx,
    stratified_sample,
    stratified_split,
)
from pipeline.evaluate.harness import make_split
from pipeline.evaluate.metrics import score


def test_metrics_on_a_hand_checked_case():
    # query 1: right at rank 1, 3 of its top 10 right; query 2: first right at rank 4, 1 of 10;
    # query 3: first right at rank 7, 2 of 10; query 4: nothing right (and only 5 results)
    ranked = [
        list("aaxaxxxxxx"),
        list("xxxbxxxxxx"),
        list("xxxxxxcxcx"),
        list("xxxxx"),
    ]
    scores = score(["a", "b", "c", "d"], ranked)
    assert scores.queries == 4
    assert scores.hit == {1: 0.25, 5: 0.5, 10: 0.75}
    assert scores.precision_at_10 == pytest.approx((3 + 1 + 2 + 0) / 40)


def test_metrics_refuse_mismatched_input():
    with pytest.raises(ValueError):
        score(["a"], [])


def test_stratified_split_is_seeded_disjoint_and_per_label():
    labels = ["cat"] * 10 + ["dog"] * 5 + ["owl"] * 2
    index, queries = stratified_split(labels, 0.2, seed=3)
    assert set(index).isdisjoint(queries) and len(index) + len(queries) == len(labels)
    by_label = {label: sum(labels[q] == label for q in queries) for label in set(labels)}
    assert by_label == {"cat": 2, "dog": 1, "owl": 1}
    again = stratified_split(labels, 0.2, seed=3)
    assert [a.tolist() for a in again] == [index.tolist(), queries.tolist()]
    assert stratified_split(labels, 0.2, seed=4)[1].tolist() != queries.tolist()


def test_stratified_sample_keeps_the_proportions():
    labels = ["a"] * 600 + ["b"] * 300 + ["c"] * 100
    rows = stratified_sample(labels, 100, seed=0)
    picked = [labels[r] for r in rows]
    assert (picked.count("a"), picked.count("b"), picked.count("c")) == (60, 30, 10)
    assert len(set(rows.tolist())) == 100


def _idx(array: np.ndarray) -> bytes:
    header = b"\x00\x00\x08" + bytes([array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def test_idx_files_load_as_labelled_pngs(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (6, 28, 28), dtype=np.uint8)
    labels = np.array([0, 1, 2, 0, 1, 2], np.uint8)
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(pixels)))
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx(labels)))
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(_idx(pixels[:2]))
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(_idx(labels[:2]))
    data = load_dataset(tmp_path)
    assert data.labels == ["0", "1", "2", "0", "1", "2", "0", "1"]
    decoded = np.asarray(Image.open(io.BytesIO(data.images[4])))
    np.testing.assert_array_equal(decoded, pixels[4])
    np.testing.assert_array_equal(read_idx(_idx(labels)), labels)


@pytest.mark.parametrize(
    "data", [b"", b"\x00\x01\x08\x01", b"\x00\x00\x08\x01\x00\x00\x00\x05\x01\x02"]
)
def test_a_bad_idx_file_is_a_clear_error(data):
    with pytest.raises(ValueError, match="IDX"):
        read_idx(data)


def test_a_labelled_folder_and_a_split_with_stable_ids(tmp_path):
    for label in ("red", "blue"):
        (tmp_path / label).mkdir()
        for i in range(5):
            Image.new("RGB", (8, 8), label).save(tmp_path / label / f"{i}.png")
    (tmp_path / "notes.txt").write_text("not a label folder")
    data = load_folder(tmp_path)
    assert data.labels == ["blue"] * 5 + ["red"] * 5
    split = make_split(data, seed=1)
    assert len(split.ids) == len(split.index.images) == 8 and len(split.queries.images) == 2
    assert sorted(split.queries.labels) == ["blue", "red"]
    assert make_split(data, seed=1).ids == split.ids


def test_an_empty_folder_is_refused(tmp_path):
    with pytest.raises(ValueError, match="no images"):
        load_folder(tmp_path)
