"""The index's search and build settings travel with each call (pipeline/storage/vector_index.py's
SQL functions), so a session that opened with other settings, as the Data API's pooled sessions
do, still searches with ef_search and an iterative scan and builds with the memory given; and
the session's own settings are left as they were. The functions are made once per version,
also when two syncs prepare the database at once."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np
import psycopg
import pytest

from pipeline.local import postgres
from pipeline.lookup.ranking import rank
from pipeline.settings import Settings
from pipeline.storage.data_api import DataApi
from pipeline.storage.vector_index import (
    BUILD_FUNCTION,
    BUILD_NAME,
    FUNCTIONS,
    SEARCH_FUNCTION,
    SEARCH_NAME,
    IndexRow,
    VectorIndex,
    tagged,
    vector_text,
)

DIM = 32
ROWS = 4000
TABLE = "vec_00000000000000ca_1"
QUERIES = 10


@pytest.fixture(scope="module")
def database(pg_server: postgres.Server) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """A table of random unit vectors, the two functions, and no index yet."""
    rng = np.random.default_rng(11)
    vectors = rng.standard_normal((ROWS, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = np.array([f"img{i:05d}" for i in range(ROWS)])
    postgres.create_database(pg_server, "call_settings")
    dsn = postgres.dsn(pg_server.port, database="call_settings")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        conn.execute(SEARCH_FUNCTION)
        conn.execute(BUILD_FUNCTION)
        conn.execute(
            f"CREATE TABLE {TABLE} (image_id text PRIMARY KEY, s3_key text NOT NULL, "
            f"source_etag text, embedding vector({DIM}) NOT NULL)"
        )
        with conn.cursor() as cur, cur.copy(f"COPY {TABLE} FROM STDIN") as copy:
            for image_id, vector in zip(ids, vectors, strict=True):
                copy.write_row((image_id, f"k/{image_id}", None, vector_text(vector)))
    yield dsn, vectors, ids


def build(conn: psycopg.Connection, memory: str) -> list[str]:
    """Build the table's index with `memory`; pgvector's notices from the build."""
    notices: list[str] = []
    conn.add_notice_handler(lambda diag: notices.append(str(diag.message_primary)))
    conn.execute(f"DROP INDEX IF EXISTS {TABLE}_hnsw")
    conn.execute(f"SELECT {BUILD_NAME}(%s, 16, 64, %s)", (TABLE, memory))
    return notices


def test_the_build_gets_the_memory_it_is_given_not_the_sessions(database) -> None:
    dsn, _, _ = database
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET maintenance_work_mem = '1MB'")
        small = build(conn, "1MB")
        large = build(conn, "256MB")
        assert conn.execute("SHOW maintenance_work_mem").fetchone()[0] == "1MB"
        options = conn.execute(
            "SELECT reloptions FROM pg_class WHERE relname = %s", (f"{TABLE}_hnsw",)
        ).fetchone()
    assert options is not None and sorted(options[0]) == ["ef_construction=64", "m=16"]
    assert any("no longer fits into maintenance_work_mem" in n for n in small), small
    assert not any("no longer fits" in n for n in large), large


def test_a_session_with_pgvectors_defaults_still_searches_with_the_calls_settings(
    database,
) -> None:
    dsn, vectors, ids = database
    rng = np.random.default_rng(12)
    queries = rng.standard_normal((QUERIES, DIM)).astype(np.float32)
    with psycopg.connect(dsn, autocommit=True) as conn:
        build(conn, "256MB")
        conn.execute("SET enable_seqscan = off")  # the index path, as on a large prompt
        conn.execute("SET hnsw.ef_search = 10")
        conn.execute("SET hnsw.iterative_scan = off")
        # the session's own settings: ten candidates, so a page of 50 under-fills
        plain = conn.execute(
            f"SELECT image_id FROM {TABLE} ORDER BY embedding <=> %s::vector LIMIT 50",
            (vector_text(queries[0]),),
        ).fetchall()
        assert len(plain) == 10

        def search(query: np.ndarray, k: int, ef_search: int) -> list[tuple[str, float]]:
            rows = conn.execute(
                f"SELECT image_id, score FROM {SEARCH_NAME}(%s, %s::vector, %s, %s, "
                "NULL, NULL, NULL, NULL)",
                (TABLE, vector_text(query), k, ef_search),
            ).fetchall()
            return [(r[0], r[1]) for r in rows]

        # the call's iterative scan fills the page even with ten candidates
        page = search(queries[0], 50, 10)
        assert len(page) == 50
        assert page == sorted(page, key=lambda r: (-r[1], r[0]))
        # and the call's ef_search reaches the index: the exact top-10 at 400
        for query in queries:
            exact = rank(vectors, ids, query, 10).ids
            assert [r[0] for r in search(query, 10, 400)] == list(exact)
        settings = conn.execute(
            "SELECT current_setting('hnsw.ef_search'), current_setting('hnsw.iterative_scan')"
        ).fetchone()
    assert settings == ("10", "off")


def fresh_database(rds_data, name: str) -> tuple[VectorIndex, str]:
    """A database of its own behind the Data API emulator, and the index on it."""
    postgres.create_database(rds_data.server, name)
    settings = replace(rds_data.settings(Settings()), vector_db_name=name)
    return VectorIndex(DataApi(settings)), postgres.dsn(rds_data.server.port, database=name)


def function_rows(dsn: str) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT proname, xmin::text FROM pg_proc WHERE proname LIKE 'imgsim%' ORDER BY 1"
        ).fetchall()


def test_preparing_a_prepared_database_writes_nothing(rds_data) -> None:
    index, dsn = fresh_database(rds_data, "prepare_twice")
    index.prepare_database()
    first = function_rows(dsn)
    index.prepare_database()
    assert [name for name, _ in first] == sorted(FUNCTIONS)
    assert function_rows(dsn) == first  # not replaced: the same row versions


def test_a_sync_that_loses_the_race_to_create_the_functions_goes_on(rds_data) -> None:
    """Another sync's uncommitted creation holds the catalog row: ours waits on it, and is
    refused once it commits (duplicate key); the functions are then there, so ours goes on."""
    index, dsn = fresh_database(rds_data, "prepare_race")
    index.db.execute("CREATE EXTENSION IF NOT EXISTS vector")
    with psycopg.connect(dsn) as other, ThreadPoolExecutor(1) as pool:
        for sql in FUNCTIONS.values():
            other.execute(tagged(sql))  # in its open transaction
        ours = pool.submit(index.prepare_database)
        time.sleep(2)  # ours is waiting on the other's transaction
        assert not ours.done()
        other.commit()
        ours.result(timeout=60)
    assert [name for name, _ in function_rows(dsn)] == sorted(FUNCTIONS)


def test_a_search_on_a_database_prepared_by_older_code_prepares_it_and_answers(rds_data) -> None:
    """The API function may run this code before any sync has: its first search finds no
    function of its version, makes them, and answers."""
    index, dsn = fresh_database(rds_data, "search_first")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    index.create_table(TABLE, 3)
    index.upsert(
        TABLE,
        [IndexRow(f"img{i}", f"k/{i}", "e", np.eye(3, dtype=np.float32)[i]) for i in range(3)],
    )
    assert function_rows(dsn) == []
    hits = index.search(TABLE, np.array([1.0, 0.1, 0.0], np.float32), 2)
    assert [h.image_id for h in hits] == ["img0", "img1"]
    assert [name for name, _ in function_rows(dsn)] == sorted(FUNCTIONS)
