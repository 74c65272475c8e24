"""The vector index: one PostgreSQL table with an HNSW index (pgvector) per (prompt, model) large
enough to need one, derived from the shards (pipeline.index_sync) and never the record.

A table per (prompt, model) rather than one table filtered by prompt: the index then searches
only the prompt's rows, so a query never under-fills (docs/performance.md, Vector index), a
prompt is built and switched on its own, and a model upgrade builds its table beside the old.
Rows are keyed by image; an upsert changes a row only when its object version (`source_etag`)
did, so a replayed sync changes nothing.

Scores are pgvector's (`1 - cosine distance`, float8): a row's score depends on its values
and the query alone, so a keyset cursor's (score, image_id) cuts the next page exactly.

Search and build settings (`hnsw.ef_search`, `hnsw.iterative_scan`, `maintenance_work_mem`)
travel with each statement, inside two SQL functions (`SEARCH_FUNCTION`, `BUILD_FUNCTION`)
whose `SET` clauses scope them to the call. Neither session nor database settings would do:
the Data API runs statements on pooled sessions, and a session keeps the settings it opened
with; a `SET` statement of its own would cost a round trip and may land on another session.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from pipeline.settings import Settings
from pipeline.storage.data_api import DataApi, chunks

# HNSW build and search settings: docs/performance.md, Vector index (the benchmark picked the
# defaults, pipeline.settings). pgvector's limits:
M_RANGE = (2, 100)
EF_CONSTRUCTION_MAX = 1000  # and at least 2 m
EF_SEARCH_RANGE = (1, 1000)
BUILD_WORKERS = 4  # parallel build workers (capped by the server's maintenance workers)
ITERATIVE_SCAN = "relaxed_order"  # a filtered query scans on until it has its rows
MAX_SCAN_TUPLES = 100_000  # how far an iterative scan goes: the depth a cursor can page to
BUILD_TIMEOUT_S = 6 * 3600.0
UPSERT_REQUEST_BYTES = 2_000_000  # under the Data API's request size limit, with margin
TABLE_PREFIX = "vec_"
_TABLE = re.compile(r"^vec_[0-9a-f]{16}_[0-9]+$")
# what PostgreSQL says to the loser of two concurrent creations of one object
RACE_MESSAGES = ("tuple concurrently updated", "duplicate key value", "already exists")


# The functions' names carry their signatures' version: a changed signature is a new name
# (CREATE OR REPLACE cannot change a return type), and code of either version finds its own.
SEARCH_NAME, BUILD_NAME = "imgsim_search_v1", "imgsim_build_hnsw_v1"

# The search, with its settings scoped to the call (the SET clauses; set_config inside a
# function that has one for the same setting ends with the call). The filters are on the same
# score the rows are returned with, so keyset pages cut exactly; relaxed_order may hand rows
# back slightly out of order, so they are re-sorted after a materialized CTE.
SEARCH_FUNCTION = f"""
CREATE OR REPLACE FUNCTION {SEARCH_NAME}(
    tbl text, q vector, k integer, ef_search integer, exclude_id text,
    min_score float8, after_score float8, after_id text)
RETURNS TABLE (image_id text, score float8, s3_key text, source_etag text)
LANGUAGE plpgsql
SET hnsw.ef_search = 40
SET hnsw.iterative_scan = {ITERATIVE_SCAN}
SET hnsw.max_scan_tuples = {MAX_SCAN_TUPLES}
AS $body$
DECLARE
    cond text := '';
BEGIN
    PERFORM set_config('hnsw.ef_search', CAST(ef_search AS text), true);
    IF exclude_id IS NOT NULL THEN
        cond := cond || ' AND t.image_id <> $3';
    END IF;
    IF min_score IS NOT NULL THEN
        cond := cond || ' AND 1 - (t.embedding <=> $1) >= $4';
    END IF;
    IF after_score IS NOT NULL THEN
        cond := cond || ' AND (1 - (t.embedding <=> $1) < $5'
            || ' OR (1 - (t.embedding <=> $1) = $5 AND t.image_id > $6))';
    END IF;
    RETURN QUERY EXECUTE format(
        'WITH hits AS MATERIALIZED (SELECT t.image_id, 1 - (t.embedding <=> $1) AS score, '
        || 't.s3_key, t.source_etag FROM %I t WHERE true%s ORDER BY t.embedding <=> $1 '
        || 'LIMIT $2) SELECT h.image_id, h.score, h.s3_key, h.source_etag FROM hits h '
        || 'ORDER BY h.score DESC, h.image_id', tbl, cond)
    USING q, k, exclude_id, min_score, after_score, after_id;
END
$body$
"""

# The HNSW build, with the build's memory scoped to the call, as the search's settings are.
BUILD_FUNCTION = f"""
CREATE OR REPLACE FUNCTION {BUILD_NAME}(tbl text, m integer, ef_construction integer,
    memory text)
RETURNS void
LANGUAGE plpgsql
SET maintenance_work_mem = '64MB'
AS $body$
BEGIN
    PERFORM set_config('maintenance_work_mem', memory, true);
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %I USING hnsw '
        || '(embedding vector_cosine_ops) WITH (m = %s, ef_construction = %s)',
        tbl || '_hnsw', tbl, m, ef_construction);
END
$body$
"""


FUNCTIONS = {SEARCH_NAME: SEARCH_FUNCTION, BUILD_NAME: BUILD_FUNCTION}


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
    """pgvector's text form; nine significant digits read back as the same float32 (a row and a
    query are stored and searched exactly), in about half the text and time of a float's repr."""
    return "[" + ",".join(map("{:.9g}".format, np.asarray(vector, np.float32).tolist())) + "]"


class VectorIndex:
    def __init__(self, db: DataApi) -> None:
        self.db = db

    # ---------------------------------------------------------------- set-up
    def prepare_database(self) -> None:
        """The extension and the search and build functions of this code's version. Each
        sync task calls it, and two may run at once: what is already there is not written
        again (PostgreSQL refuses a second concurrent CREATE OR REPLACE of one function with
        "tuple concurrently updated"), and a write that lost such a race is checked, not
        failed."""
        self._ensure("CREATE EXTENSION IF NOT EXISTS vector", self._has_vector)
        for name, sql in FUNCTIONS.items():
            tag = version_tag(sql)
            self._ensure(tagged(sql), partial(self._has_function, name, tag))

    def _has_vector(self) -> bool:
        return bool(self.db.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'"))

    def _has_function(self, name: str, tag: str) -> bool:
        rows = self.db.execute(
            "SELECT 1 FROM pg_proc WHERE proname = :name AND position(:tag IN prosrc) > 0",
            {"name": name, "tag": tag},
        )
        return bool(rows)

    def _ensure(self, sql: str, present: Callable[[], bool]) -> None:
        if present():
            return
        try:
            self.db.execute(sql)
        except Exception as exc:  # the Data API's error, the database's message in its text
            if not any(m in str(exc) for m in RACE_MESSAGES) or not present():
                raise

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
        m, ef_construction, memory = build_settings(self.db.settings)
        # vectors live out of line (TOAST): the heap looks too small for the planner's rule
        # for a parallel build, so the workers are named on the table
        self.db.execute(f"ALTER TABLE {t} SET (parallel_workers = {BUILD_WORKERS})")
        self.db.execute_long(
            f"SELECT {BUILD_NAME}('{t}', {m}, {ef_construction}, '{memory}')",
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
        params: dict[str, Any] = {
            "table": _checked(table),
            "q": vector_text(query),
            "limit": int(limit),
            "ef_search": ef_search(self.db.settings),
            "exclude": exclude,
            "min_score": None if min_score is None else float(min_score),
            "after_score": None if after is None else float(after[0]),
            "after_id": None if after is None else after[1],
        }
        sql = (
            f"SELECT image_id, score, s3_key, source_etag FROM {SEARCH_NAME}("
            "CAST(:table AS text), CAST(:q AS vector), CAST(:limit AS integer), "
            "CAST(:ef_search AS integer), CAST(:exclude AS text), CAST(:min_score AS float8), "
            "CAST(:after_score AS float8), CAST(:after_id AS text))"
        )
        try:
            rows = self.db.execute(sql, params)
        except Exception as exc:  # the Data API's error, the database's message in its text
            # undefined_function; not a missing table, whose message names the function too
            if f"ERROR: function {SEARCH_NAME}(" not in str(exc) and "42883" not in str(exc):
                raise
            # a database prepared by older code (the sync prepares it, and may not have run
            # since this code was deployed): prepared here, once
            self.prepare_database()
            rows = self.db.execute(sql, params)
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


def version_tag(sql: str) -> str:
    """The line a function's body carries to say which definition it is. Pure."""
    return f"-- imgsim {hashlib.sha256(sql.encode()).hexdigest()[:16]}"


def tagged(sql: str) -> str:
    """A function's definition with its version line (of the definition without it) first in
    its body. Pure."""
    return sql.replace("AS $body$\n", f"AS $body$\n{version_tag(sql)}\n", 1)


def build_settings(settings: Settings) -> tuple[int, int, str]:
    """(m, ef_construction, maintenance_work_mem) of a new build, checked against pgvector's
    limits before a build starts rather than failing in the database. Pure."""
    m, ef_construction = settings.vector_index_m, settings.vector_index_ef_construction
    memory = settings.vector_index_build_memory
    if not M_RANGE[0] <= m <= M_RANGE[1]:
        raise ValueError(f"IMGSIM_VECTOR_INDEX_M={m}: pgvector takes {M_RANGE[0]} to {M_RANGE[1]}")
    if not 2 * m <= ef_construction <= EF_CONSTRUCTION_MAX:
        raise ValueError(
            f"IMGSIM_VECTOR_INDEX_EF_CONSTRUCTION={ef_construction}: pgvector takes 2 m "
            f"({2 * m}) to {EF_CONSTRUCTION_MAX}"
        )
    if not re.fullmatch(r"[0-9]+(kB|MB|GB)", memory):
        raise ValueError(f"IMGSIM_VECTOR_INDEX_BUILD_MEMORY={memory!r}: a size like 2GB")
    return m, ef_construction, memory


def ef_search(settings: Settings) -> int:
    """The search's candidate list, checked against pgvector's limits. Pure."""
    value = settings.vector_index_ef_search
    low, high = EF_SEARCH_RANGE
    if not low <= value <= high:
        raise ValueError(f"IMGSIM_VECTOR_INDEX_EF_SEARCH={value}: pgvector takes {low} to {high}")
    return value


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
