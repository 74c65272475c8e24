"""The vector index: one PostgreSQL table with an HNSW index (pgvector) per (prompt, model) large
enough to need one, derived from the shards (pipeline.index_sync) and never the record.

A table per (prompt, model) rather than one table filtered by prompt: the index then searches
only the prompt's rows, so a query never under-fills (docs/performance.md, Vector index), a
prompt is built and switched on its own, and a model upgrade builds its table beside the old.
Rows are keyed by image; an upsert changes a row only when its object version (`source_etag`)
did, so a replayed sync changes nothing.

Scores are pgvector's (`1 - cosine distance`, float8): a row's score depends on its values
and the query alone, so a keyset cursor's (score, image_id) cuts the next page exactly. The
search settings (`hnsw.ef_search`, `hnsw.iterative_scan`) are the database's own
(`ALTER DATABASE ... SET`, by `prepare_database`), so no statement pays a `SET` round trip.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.storage.data_api import DataApi, chunks

# HNSW build and search settings: docs/performance.md, Vector index (the benchmark picked them).
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 128
BUILD_WORKERS = 4  # parallel build workers (capped by the server's maintenance workers)
ITERATIVE_SCAN = "relaxed_order"  # a filtered query scans on until it has its rows
MAX_SCAN_TUPLES = 100_000  # how far an iterative scan goes: the depth a cursor can page to
BUILD_TIMEOUT_S = 6 * 3600.0
UPSERT_REQUEST_BYTES = 2_000_000  # under the Data API's request size limit, with margin
TABLE_PREFIX = "vec_"
_TABLE = re.compile(r"^vec_[0-9a-f]{16}_[0-9]+$")


@dataclass(frozen=True)
class IndexRow:
    image_id: str
    s3_key: str
    source_etag: str | None
    embedding: np.ndarray


@dataclass(frozen=True)
class IndexHit:
    image_id: str
    score: float
    s3_key: str
    source_etag: str | None


def table_name(prompt: str, model_id: str, generation: int) -> str:
    """The table of one build of a (prompt, model): a rebuild gets a new generation, so it is
    made beside the one answering and switched to whole. Pure."""
    return f"{TABLE_PREFIX}{pair_digest(prompt, model_id)}_{generation}"


def pair_digest(prompt: str, model_id: str) -> str:
    return hashlib.sha256(f"{model_id}\0{prompt}".encode()).hexdigest()[:16]


def table_parts(table: str) -> tuple[str, int]:
    """(the pair's digest, the generation) of a table `table_name` made. Pure."""
    digest, generation = _checked(table)[len(TABLE_PREFIX) :].split("_")
    return digest, int(generation)


def _checked(table: str) -> str:
    """Only names `table_name` makes reach SQL text (they cannot be parameters)."""
    if not _TABLE.match(table):
        raise ValueError(f"not a vector index table: {table!r}")
    return table


def vector_text(vector: np.ndarray) -> str:
    """pgvector's text form, every float32 digit kept (a row and a query read back exactly)."""
    return "[" + ",".join(repr(float(x)) for x in np.asarray(vector, np.float32)) + "]"


class VectorIndex:
    def __init__(self, db: DataApi) -> None:
        self.db = db

    # ---------------------------------------------------------------- set-up
    def prepare_database(self) -> None:
        """The extension, and the search and build settings every later session of the
        database gets."""
        self.db.execute("CREATE EXTENSION IF NOT EXISTS vector")
        settings = self.db.settings
        database = settings.vector_db_name
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", database):
            raise ValueError(f"database name {database!r}")
        memory = settings.vector_index_build_memory
        if not re.match(r"^[0-9]+(kB|MB|GB)$", memory):
            raise ValueError(f"IMGSIM_VECTOR_INDEX_BUILD_MEMORY={memory!r}: a size like 2GB")
        for name, value in (
            ("maintenance_work_mem", memory),
            ("hnsw.ef_search", str(int(settings.vector_index_ef_search))),
            ("hnsw.iterative_scan", ITERATIVE_SCAN),
            ("hnsw.max_scan_tuples", str(MAX_SCAN_TUPLES)),
        ):
            self.db.execute(f"ALTER DATABASE {database} SET {name} = '{value}'")

    def create_table(self, table: str, dim: int) -> None:
        t = _checked(table)
        self.db.execute(
            f"CREATE TABLE IF NOT EXISTS {t} (image_id text PRIMARY KEY, s3_key text NOT NULL, "
            f"source_etag text, embedding vector({int(dim)}) NOT NULL)"
        )

    def build_index(self, table: str) -> None:
        """The HNSW index of a loaded table (built once, after the bulk load: faster than
        growing it row by row). It may outlast one Data API call: polled until valid."""
        t = _checked(table)
        # vectors live out of line (TOAST): the heap looks too small for the planner's rule
        # for a parallel build, so the workers are named on the table
        self.db.execute(f"ALTER TABLE {t} SET (parallel_workers = {BUILD_WORKERS})")
        self.db.execute_long(
            f"CREATE INDEX IF NOT EXISTS {t}_hnsw ON {t} USING hnsw "
            f"(embedding vector_cosine_ops) WITH (m = {HNSW_M}, "
            f"ef_construction = {HNSW_EF_CONSTRUCTION})",
            done=(
                "SELECT coalesce(bool_and(i.indisvalid), false) FROM pg_index i "
                f"JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = '{t}_hnsw'"
            ),
            timeout_s=BUILD_TIMEOUT_S,
        )

    def drop(self, table: str) -> None:
        self.db.execute(f"DROP TABLE IF EXISTS {_checked(table)}")

    def tables(self) -> list[str]:
        """Every index table in the database (the sync drops those no manifest names)."""
        rows = self.db.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
            "AND tablename LIKE 'vec\\_%'"
        )
        return [str(r[0]) for r in rows if _TABLE.match(str(r[0]))]

    # ---------------------------------------------------------------- writes
    def upsert(self, table: str, rows: Iterable[IndexRow]) -> int:
        """Insert or update rows by image; a row of the same object version is left as it is.
        Returns how many rows were sent."""
        t = _checked(table)
        sql = (
            f"INSERT INTO {t} (image_id, s3_key, source_etag, embedding) "
            "VALUES (:image_id, :s3_key, :source_etag, CAST(:embedding AS vector)) "
            "ON CONFLICT (image_id) DO UPDATE SET s3_key = EXCLUDED.s3_key, "
            "source_etag = EXCLUDED.source_etag, embedding = EXCLUDED.embedding "
            f"WHERE {t}.source_etag IS DISTINCT FROM EXCLUDED.source_etag"
        )
        sets = (
            {
                "image_id": r.image_id,
                "s3_key": r.s3_key,
                "source_etag": r.source_etag,
                "embedding": vector_text(r.embedding),
            }
            for r in rows
        )
        sent = 0
        for group in chunks(sets, UPSERT_REQUEST_BYTES):
            self.db.execute_many(sql, group)
            sent += len(group)
        return sent

    def delete(self, table: str, image_ids: Iterable[str]) -> None:
        ids = sorted(set(image_ids))
        for start in range(0, len(ids), 1000):
            self.db.execute(
                f"DELETE FROM {_checked(table)} WHERE image_id IN "
                "(SELECT jsonb_array_elements_text(CAST(:ids AS jsonb)))",
                {"ids": json.dumps(ids[start : start + 1000])},
            )

    def count(self, table: str) -> int:
        return int(self.db.execute(f"SELECT count(*) FROM {_checked(table)}")[0][0])

    # ---------------------------------------------------------------- reads
    def search(
        self,
        table: str,
        query: np.ndarray,
        limit: int,
        exclude: str | None = None,
        min_score: float | None = None,
        after: tuple[float, str] | None = None,
    ) -> list[IndexHit]:
        """The `limit` nearest rows after the keyset position `after`, best first (ties by
        image id), by HNSW with an iterative scan. The filters are on the same score the rows
        are returned with, so pages cut exactly."""
        t = _checked(table)
        params: dict[str, Any] = {"q": vector_text(query), "limit": int(limit)}
        where = []
        if exclude is not None:
            where.append("image_id <> :exclude")
            params["exclude"] = exclude
        if min_score is not None:
            where.append("1 - (embedding <=> CAST(:q AS vector)) >= :min_score")
            params["min_score"] = float(min_score)
        if after is not None:
            where.append(
                "(1 - (embedding <=> CAST(:q AS vector)) < :after_score OR "
                "(1 - (embedding <=> CAST(:q AS vector)) = :after_score AND image_id > :after_id))"
            )
            params["after_score"], params["after_id"] = float(after[0]), after[1]
        condition = f"WHERE {' AND '.join(where)} " if where else ""
        # relaxed_order may hand rows back slightly out of order: a materialized CTE, re-sorted
        rows = self.db.execute(
            "WITH hits AS MATERIALIZED (SELECT image_id, s3_key, source_etag, "
            f"1 - (embedding <=> CAST(:q AS vector)) AS score FROM {t} {condition}"
            "ORDER BY embedding <=> CAST(:q AS vector) LIMIT :limit) "
            "SELECT image_id, score, s3_key, source_etag FROM hits ORDER BY score DESC, image_id",
            params,
        )
        return [IndexHit(str(r[0]), float(r[1]), str(r[2]), r[3]) for r in rows]

    def etags(self, table: str, image_ids: Sequence[str]) -> dict[str, str | None]:
        """The object version of each of `image_ids` the table holds a row of."""
        if not image_ids:
            return {}
        rows = self.db.execute(
            f"SELECT image_id, source_etag FROM {_checked(table)} WHERE image_id IN "
            "(SELECT jsonb_array_elements_text(CAST(:ids AS jsonb)))",
            {"ids": json.dumps(list(image_ids))},
        )
        return {str(r[0]): r[1] for r in rows}


def index_rows(table: Any, etag_column: str = "source_etag") -> Iterable[IndexRow]:
    """The rows of a shard (a pyarrow table of the shard schema). Pure."""
    vectors = table.column("embedding").combine_chunks()
    dim = vectors.type.list_size
    matrix = vectors.values.to_numpy(zero_copy_only=False).reshape(-1, dim)
    ids = table.column("image_id").to_pylist()
    keys = table.column("s3_key").to_pylist()
    etags: Sequence[str | None] = (
        table.column(etag_column).to_pylist()
        if etag_column in table.column_names
        else [None] * len(ids)
    )
    for n, image_id in enumerate(ids):
        yield IndexRow(image_id, keys[n], etags[n], matrix[n])
