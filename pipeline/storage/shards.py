"""Parquet shards of embeddings: the one schema and their S3 I/O (keys: storage.keys)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.storage.bucket import ObjectStore

ROW_GROUP_ROWS = 16_384
PARSE_THREADS = 4
OPTIONAL_COLUMNS = frozenset({"source_etag"})  # shards written before it existed lack it


def shard_schema(dim: int, model_id: str, prompt: str) -> pa.Schema:
    """Vectors L2-normalized float32; file metadata names the model (docs/design.md, Storage).

    `source_etag` is the ETag of the object version the vector came from: a lookup shows a
    row only while the image's record still names that version. Nullable because shards
    written before the column existed lack it (their rows are checked by status only)."""
    return pa.schema(
        [
            pa.field("image_id", pa.string(), nullable=False),
            pa.field("embedding", pa.list_(pa.float32(), dim), nullable=False),
            pa.field("created_at", pa.timestamp("ms", tz="UTC"), nullable=False),
            pa.field("s3_key", pa.string(), nullable=False),
            pa.field("source_etag", pa.string(), nullable=True),
        ],
        metadata={"model_id": model_id, "dim": str(dim), "prompt": prompt},
    )


@dataclass(frozen=True)
class ShardRow:
    image_id: str
    embedding: np.ndarray
    created_at: datetime
    s3_key: str
    source_etag: str

    @classmethod
    def of_record(cls, record: Mapping[str, Any], embedding: np.ndarray) -> ShardRow:
        """The row of an Images record's current version, with a vector stored for it."""
        return cls(
            image_id=record["image_id"],
            embedding=embedding,
            created_at=datetime.fromisoformat(record["created_at"].replace("Z", "+00:00")),
            s3_key=record["s3_key"],
            source_etag=record["etag"],
        )


def rows_table(rows: Sequence[ShardRow], dim: int, model_id: str, prompt: str) -> pa.Table:
    """Rows sorted by image_id, one per image (the last one given wins)."""
    unique = {row.image_id: row for row in rows}
    ordered = [unique[k] for k in sorted(unique)]
    matrix = (
        np.stack([r.embedding for r in ordered]).astype(np.float32)
        if ordered
        else np.zeros((0, dim), np.float32)
    )
    if matrix.shape[1:] != (dim,):
        raise ValueError(f"embeddings have shape {matrix.shape[1:]}, expected ({dim},)")
    vectors = pa.FixedSizeListArray.from_arrays(pa.array(matrix.ravel(), pa.float32()), dim)
    return pa.Table.from_arrays(
        [
            pa.array([r.image_id for r in ordered], pa.string()),
            vectors,
            pa.array([r.created_at for r in ordered], pa.timestamp("ms", tz="UTC")),
            pa.array([r.s3_key for r in ordered], pa.string()),
            pa.array([r.source_etag for r in ordered], pa.string()),
        ],
        schema=shard_schema(dim, model_id, prompt),
    )


def merge_tables(tables: list[pa.Table], dropped: frozenset[str] = frozenset()) -> pa.Table:
    """Concatenate, keep the last row per image_id except the `dropped` ids, sort by
    image_id. Pure. Shards written before `source_etag` existed get nulls in that column."""
    combined = pa.concat_tables(tables, promote_options="default")
    ids = combined.column("image_id").to_pylist()
    last = {image_id: i for i, image_id in enumerate(ids) if image_id not in dropped}
    keep = sorted(last.values(), key=lambda i: ids[i])
    return combined.take(pa.array(keep, pa.int64())).replace_schema_metadata(
        tables[-1].schema.metadata
    )


class ShardStore(ObjectStore):
    """Reads and writes shards in the project bucket as whole objects through the S3 client.

    One GetObject and an in-memory parse beat pyarrow's S3 filesystem (ranged reads or an
    input stream) by far (docs/performance.md, Shard parsing), so shards move as whole objects
    and pyarrow parses from memory."""

    def write(self, key: str, table: pa.Table) -> None:
        """Overwrite-on-retry: the same key always gets the whole shard in one PUT.

        Vectors are written uncompressed in v1 data pages without dictionaries, in row groups
        of 16k rows: float32 embeddings hardly compress, and this layout parses in parallel,
        which is what a cold lookup waits for (docs/performance.md, Shard parsing)."""
        buffer = io.BytesIO()
        pq.write_table(
            table,
            buffer,
            compression={
                name: ("none" if name == "embedding" else "zstd") for name in table.column_names
            },
            use_dictionary=False,
            data_page_version="1.0",
            row_group_size=ROW_GROUP_ROWS,
        )
        self.client.put_object(
            Bucket=self.bucket,
            Key=key,
            Body=buffer.getvalue(),
            ContentType="application/vnd.apache.parquet",
        )

    def read(self, key: str, columns: list[str] | None = None) -> pa.Table:
        """The shard, or its `columns` (an older shard lacks the optional ones)."""
        body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        return parse_shard(body, columns)

    def open(self, key: str) -> pq.ParquetFile:
        """The shard read in ranges: its footer, then only the row groups and columns asked
        for. For work over shards too large to hold whole (compaction), not for lookups."""
        return pq.ParquetFile(io.BufferedReader(RangedObject(self.client, self.bucket, key)))

    def ids(self, key: str) -> pa.Array:
        """The shard's image_id column alone, fetched by ranges."""
        return self.open(key).read(["image_id"]).column("image_id").combine_chunks()


class RangedObject(io.RawIOBase):
    """A read-only, seekable file over one S3 object: each read is a ranged GetObject."""

    def __init__(self, s3: Any, bucket: str, key: str) -> None:
        super().__init__()
        self.s3, self.bucket, self.key = s3, bucket, key
        head = s3.head_object(Bucket=bucket, Key=key)
        self.size, self.etag = int(head["ContentLength"]), head["ETag"]
        self.position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        self.position = max(base + offset, 0)
        return self.position

    def readinto(self, buffer: Any) -> int:
        count = min(len(buffer), self.size - self.position)
        if count <= 0:
            return 0
        end = self.position + count - 1
        response = self.s3.get_object(
            Bucket=self.bucket,
            Key=self.key,
            Range=f"bytes={self.position}-{end}",
            IfMatch=self.etag,  # every range of the one version the footer came from
        )
        data = response["Body"].read()
        buffer[: len(data)] = data
        self.position += len(data)
        return len(data)


def parse_shard(body: bytes, columns: list[str] | None = None) -> pa.Table:
    """Row groups parsed in parallel, each thread through a ParquetFile of its own (a reader
    is not shared across threads): `pq.read_table` parallelises them too, but imports
    pyarrow.dataset, which a cold lookup would wait for."""
    first = pq.ParquetFile(pa.BufferReader(body))
    present = first.schema_arrow.names
    missing = set(columns or ()) - set(present) - OPTIONAL_COLUMNS
    if missing:
        raise ValueError(f"shard has no column {sorted(missing)}")
    wanted = present if columns is None else [c for c in columns if c in present]
    if first.num_row_groups < 2:
        return first.read(wanted)

    def group(index: int) -> pa.Table:
        reader = pq.ParquetFile(pa.BufferReader(body))
        return reader.read_row_group(index, wanted, use_threads=False)

    with ThreadPoolExecutor(min(first.num_row_groups, PARSE_THREADS)) as pool:
        return pa.concat_tables(list(pool.map(group, range(first.num_row_groups))))
