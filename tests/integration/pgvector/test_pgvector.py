"""pgvector on the local PostgreSQL: a prompt-filtered HNSW query under-fills without an
iterative index scan (the index hands back ef_search candidates of the whole table, and the
prompt filter keeps only its share of them), and with `hnsw.iterative_scan = relaxed_order` it
returns k rows that are the exact top-k of the prompt (pipeline/lookup/ranking.py's answer)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import psycopg
import pytest

from pipeline.local import postgres
from pipeline.lookup.ranking import rank

DIM = 512
K = 10
# rows per prompt: the last one is a 5% share of the table, the case that under-fills
PROMPTS = {"shoes": 3000, "faces": 1500, "cars": 1200, "rare": 300}
QUERIES = 20


def clustered(rng: np.random.Generator, centers: np.ndarray, n: int) -> np.ndarray:
    """n unit vectors, each its cluster center plus Gaussian noise (norm about 0.5), normalized."""
    noise = rng.standard_normal((n, DIM)).astype(np.float32) * np.float32(0.5 / np.sqrt(DIM))
    points = centers[rng.integers(len(centers), size=n)] + noise
    return points / np.linalg.norm(points, axis=1, keepdims=True)


def literal(vector: np.ndarray) -> str:
    return "[" + ",".join(repr(float(x)) for x in vector) + "]"


class Table:
    def __init__(self, dsn: str) -> None:
        rng = np.random.default_rng(7)
        centers = rng.standard_normal((10, DIM)).astype(np.float32)
        centers /= np.linalg.norm(centers, axis=1, keepdims=True)
        # every prompt draws from the same clusters, so a query's neighbourhood mixes prompts;
        # each prompt has more than K rows in every cluster, so a query's exact top-k lies in
        # its own cluster, as it does for real images (with clusters smaller than K, the top-k's
        # tail is near-random vectors of other clusters, a tie no index finds reliably)
        self.vectors = {p: clustered(rng, centers, n) for p, n in PROMPTS.items()}
        self.ids = {}
        self.queries = clustered(rng, centers, QUERIES)
        self.dsn = dsn
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("DROP TABLE IF EXISTS items")
            conn.execute(
                f"CREATE TABLE items (id text PRIMARY KEY, prompt text NOT NULL,"
                f" embedding vector({DIM}) NOT NULL)"
            )
            with (
                conn.cursor() as cur,
                cur.copy("COPY items (id, prompt, embedding) FROM STDIN") as cp,
            ):
                for prompt, vectors in self.vectors.items():
                    ids = np.array([f"{prompt}-{i:05d}" for i in range(len(vectors))])
                    self.ids[prompt] = ids
                    for image_id, vector in zip(ids, vectors, strict=True):
                        cp.write_row((image_id, prompt, literal(vector)))
            conn.execute(
                "CREATE INDEX items_hnsw ON items USING hnsw (embedding vector_cosine_ops)"
                " WITH (m = 16, ef_construction = 64)"
            )
            conn.execute("ANALYZE items")

    def query(self, conn: psycopg.Connection, prompt: str, vector: np.ndarray) -> list[str]:
        # relaxed_order may return rows slightly out of order: the outer query re-sorts them
        rows = conn.execute(
            "WITH nearest AS MATERIALIZED ("
            " SELECT id, embedding <=> %(q)s::vector AS distance FROM items"
            " WHERE prompt = %(p)s ORDER BY embedding <=> %(q)s::vector LIMIT %(k)s)"
            " SELECT id FROM nearest ORDER BY distance, id",
            {"q": literal(vector), "p": prompt, "k": K},
        ).fetchall()
        return [r[0] for r in rows]

    def plan(self, conn: psycopg.Connection, prompt: str) -> str:
        rows = conn.execute(
            "EXPLAIN SELECT id FROM items WHERE prompt = %(p)s"
            " ORDER BY embedding <=> %(q)s::vector LIMIT %(k)s",
            {"q": literal(self.queries[0]), "p": prompt, "k": K},
        ).fetchall()
        return "\n".join(r[0] for r in rows)

    def exact(self, prompt: str, vector: np.ndarray) -> list[str]:
        return rank(self.vectors[prompt], self.ids[prompt], vector, K).ids


@pytest.fixture(scope="module")
def table(pg_server: postgres.Server) -> Iterator[Table]:
    yield Table(pg_server.dsn)


def test_server_has_pgvector_with_iterative_scans(pg_server: postgres.Server) -> None:
    pg, vector = postgres.version(pg_server)
    assert int(pg.split(".")[0]) >= 16
    # iterative scans came in 0.8.0; 0.8.3 and 0.8.4 fixed HNSW corruption and vacuum errors
    assert tuple(int(x) for x in vector.split(".")) >= (0, 8, 4)


def test_filtered_hnsw_under_fills_a_small_prompt_without_iterative_scan(table: Table) -> None:
    with psycopg.connect(table.dsn) as conn:
        # the planner picks an exact scan of a prompt this small (its statistics count 300
        # rows): the index path is what a prompt above the threshold takes, so force it
        conn.execute("SET enable_seqscan = off")
        conn.execute("SET hnsw.ef_search = 40")
        conn.execute("SET hnsw.iterative_scan = off")
        assert "items_hnsw" in table.plan(conn, "rare")
        counts = [len(table.query(conn, "rare", q)) for q in table.queries]
    # 40 candidates of the whole table, about 5% of them in the prompt
    assert max(counts) < K, counts


def test_iterative_scan_returns_the_exact_top_k_of_the_prompt(table: Table) -> None:
    with psycopg.connect(table.dsn) as conn:
        conn.execute("SET enable_seqscan = off")
        conn.execute("SET hnsw.ef_search = 100")
        conn.execute("SET hnsw.iterative_scan = relaxed_order")
        for prompt in ("shoes", "rare"):
            assert "items_hnsw" in table.plan(conn, prompt)
            recalls = []
            for q in table.queries:
                got = table.query(conn, prompt, q)
                assert len(got) == K
                recalls.append(len(set(got) & set(table.exact(prompt, q))) / K)
            # HNSW is approximate and its graph random (pgvector draws each node's level), so
            # a query may miss one row of ten now and then; the prompt's answer as a whole is
            # its exact top-k
            assert np.mean(recalls) >= 0.98 and min(recalls) >= 0.8, (prompt, recalls)
