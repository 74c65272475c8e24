"""Labelled images: a folder with one sub-folder per label, or IDX files (MNIST's format,
Fashion-MNIST's too); and the seeded, stratified splits the harness uses."""

from __future__ import annotations

import gzip
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
IDX_DTYPES: dict[int, Any] = {
    0x08: np.uint8,
    0x09: np.int8,
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}


@dataclass(frozen=True)
class LabelledImages:
    """Encoded images (what a user would upload) with one label each."""

    name: str
    images: list[bytes]
    labels: list[str]

    def subset(self, rows: list[int] | np.ndarray) -> LabelledImages:
        return LabelledImages(
            self.name, [self.images[i] for i in rows], [self.labels[i] for i in rows]
        )


def load_folder(root: Path) -> LabelledImages:
    images, labels = [], []
    for folder in sorted(p for p in Path(root).iterdir() if p.is_dir()):
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                images.append(path.read_bytes())
                labels.append(folder.name)
    if not images:
        raise ValueError(f"{root}: no images in sub-folders (one sub-folder per label)")
    return LabelledImages(Path(root).name, images, labels)


def read_idx(data: bytes) -> np.ndarray:
    """An IDX array (optionally gzipped): magic 0x0000, type byte, ndim byte, big-endian
    uint32 dimensions, then the values."""
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] not in IDX_DTYPES:
        raise ValueError("not an IDX file (bad magic number)")
    ndim = data[3]
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", ndim, offset=4))
    values = np.frombuffer(data, IDX_DTYPES[data[2]], offset=4 + 4 * ndim)
    if values.size != int(np.prod(shape)):
        raise ValueError(f"IDX header says {shape} but the file holds {values.size} values")
    return values.reshape(shape)


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def load_idx(images_file: Path, labels_file: Path, name: str) -> LabelledImages:
    pixels = read_idx(Path(images_file).read_bytes())
    labels = read_idx(Path(labels_file).read_bytes())
    if pixels.ndim != 3 or labels.ndim != 1 or len(pixels) != len(labels):
        raise ValueError(f"{images_file}: want N x H x W images and N labels")
    return LabelledImages(name, [png(p) for p in pixels], [str(int(x)) for x in labels])


def _find(root: Path, stem: str) -> Path | None:
    hits = sorted(root.glob(f"{stem}*"))
    return hits[0] if hits else None


def load_dataset(path: Path) -> LabelledImages:
    """A labelled folder, or a folder of IDX files (`*-images-idx3-ubyte[.gz]` beside
    `*-labels-idx1-ubyte[.gz]`; Fashion-MNIST's train and test files are joined)."""
    root = Path(path)
    if not root.is_dir():
        raise ValueError(f"{root} is not a folder")
    parts = []
    for prefix in ("train", "t10k"):
        images, labels = _find(root, f"{prefix}-images-idx3"), _find(root, f"{prefix}-labels")
        if images and labels:
            parts.append(load_idx(images, labels, root.name))
    if not parts:
        return load_folder(root)
    return LabelledImages(
        root.name,
        [image for part in parts for image in part.images],
        [label for part in parts for label in part.labels],
    )


def stratified_sample(labels: list[str], size: int, seed: int) -> np.ndarray:
    """About `size` rows with the label proportions of the whole (sorted row numbers)."""
    if size >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    rows: list[int] = []
    for label in sorted(set(labels)):
        members = np.flatnonzero(np.asarray(labels) == label)
        take = max(1, round(size * len(members) / len(labels)))
        rows.extend(rng.choice(members, min(take, len(members)), replace=False))
    return np.sort(np.asarray(rows))


def stratified_split(
    labels: list[str], query_fraction: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(index rows, query rows): per label, a seeded shuffle, `query_fraction` of it (at least
    one, and never all of a label with two or more) to query with."""
    rng = np.random.default_rng(seed)
    index: list[int] = []
    queries: list[int] = []
    for label in sorted(set(labels)):
        members = rng.permutation(np.flatnonzero(np.asarray(labels) == label))
        count = min(max(1, round(query_fraction * len(members))), max(1, len(members) - 1))
        queries.extend(members[:count])
        index.extend(members[count:])
    return np.sort(np.asarray(index, np.int64)), np.sort(np.asarray(queries, np.int64))
