"""Parquet shards of embeddings: the one schema, the one key layout, and I/O through a
pyarrow filesystem chosen from the settings (S3 on AWS, the same S3 API on moto locally)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pipeline.settings import Settings

EMBEDDINGS_PREFIX = "embeddings/"
_UNSAFE = re.compile(r"[^a-z0-9]+")


def shard_schema(dim: int, model_id: str, prompt: str) -> pa.Schema:
    """DESIGN.md section 2: vectors L2-normalized float32; file metadata names the model."""
    return pa.schema(
        [
            pa.field("image_id", pa.string(), nullable=False),
            pa.field("embedding", pa.list_(pa.float32(), dim), nullable=False),
            pa.field("created_at", pa.timestamp("ms", tz="UTC"), nullable=False),
            pa.field("s3_key", pa.string(), nullable=False),
        ],
        metadata={"model_id": model_id, "dim": str(dim), "prompt": prompt},
    )


def slug(text: str, max_len: int = 48) -> str:
    """Readable and collision-safe: `a-red-fox-1f0c2a9b` (the hash keeps distinct texts apart)."""
    readable = _UNSAFE.sub("-", text.lower()).strip("-")[:max_len].strip("-") or "x"
    return f"{readable}-{hashlib.sha256(text.encode('utf-8')).hexdigest()[:8]}"


def run_slug(run_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", run_id)


def shard_key(model_id: str, prompt: str, run_id: str, part: str = "part") -> str:
    """embeddings/model=<model>/prompt=<prompt>/<part>-<run>.parquet: deterministic per run."""
    return (f"{EMBEDDINGS_PREFIX}model={slug(model_id)}/prompt={slug(prompt)}/"
            f"{part}-{run_slug(run_id)}.parquet")


@dataclass(frozen=True)
class ShardRow:
    image_id: str
    embedding: np.ndarray
    created_at: datetime
    s3_key: str


def rows_table(rows: Sequence[ShardRow], dim: int, model_id: str, prompt: str) -> pa.Table:
    """Rows sorted by image_id, one per image (the last one given wins)."""
    unique = {row.image_id: row for row in rows}
    ordered = [unique[k] for k in sorted(unique)]
    matrix = np.stack([r.embedding for r in ordered]).astype(np.float32) if ordered else \
        np.zeros((0, dim), np.float32)
    if matrix.shape[1:] != (dim,):
        raise ValueError(f"embeddings have shape {matrix.shape[1:]}, expected ({dim},)")
    vectors = pa.FixedSizeListArray.from_arrays(pa.array(matrix.ravel(), pa.float32()), dim)
    return pa.Table.from_arrays(
        [pa.array([r.image_id for r in ordered], pa.string()), vectors,
         pa.array([r.created_at for r in ordered], pa.timestamp("ms", tz="UTC")),
         pa.array([r.s3_key for r in ordered], pa.string())],
        schema=shard_schema(dim, model_id, prompt))


class ShardStore:
    """Reads and writes shards in the project bucket through pyarrow's S3 filesystem."""

    def __init__(self, settings: Settings, filesystem: pafs.FileSystem | None = None) -> None:
        self._bucket = settings.bucket
        self._fs = filesystem or pafs.S3FileSystem(
            region=settings.region, endpoint_override=settings.endpoint("s3"),
            allow_bucket_creation=False, allow_bucket_deletion=False)

    def _path(self, key: str) -> str:
        return f"{self._bucket}/{key}"

    def write(self, key: str, table: pa.Table) -> None:
        """Overwrite-on-retry: the same key always gets the whole shard, flushed on close."""
        pq.write_table(table, self._path(key), filesystem=self._fs, compression="zstd")

    def read(self, key: str) -> pa.Table:
        return pq.read_table(self._path(key), filesystem=self._fs)

    def exists(self, key: str) -> bool:
        return self._fs.get_file_info(self._path(key)).type == pafs.FileType.File

    def delete(self, key: str) -> None:
        if self.exists(key):
            self._fs.delete_file(self._path(key))
