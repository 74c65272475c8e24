"""The exact scan against pgvector's HNSW index on the local PostgreSQL, in one run.

    python bench/scale_index.py [--n 100000] [--clusters 100] [--sigma 0.5] [--queries 1000]
        [--m 16] [--ef-construction 128] [--ef-search 40,100,200,400,800] [--filter-rows 10000]

Data: N synthetic 512-d unit vectors in clusters on the unit sphere. Cluster centers are
uniform on the sphere (normalized Gaussians); each vector picks a center uniformly and is
normalize(center + sigma * g), g ~ N(0, I/d), so its noise has norm about sigma (0.5: a
vector's cosine to its center is about 0.89, to another of its cluster about 0.8, to other
clusters about 0). 1,000 held-out queries come from the same distribution and are not in the
table. Recall depends on this shape: with fewer than k vectors per cluster in what a query
searches, the tail of its top-k is near-random vectors of other clusters, which no index finds
reliably; the run prints the vectors per cluster of each case.

Measured, per query, against the exact scan (pipeline/lookup/ranking.py's `rank` over the
in-memory matrix, the ground truth):
1. one prompt of N vectors: the exact scan, and HNSW (vector_cosine_ops, m, ef_construction)
   at each ef_search: p50/p95 of the ranking step (for HNSW, the SQL query's round trip on
   loopback), recall@10, the share of queries whose top-10 is identical (same ids, same order);
   the index's build time and size;
2. the filter case: a prompt of --filter-rows rows inside the same table (a `WHERE prompt =`
   filter), with the planner's own plan, with the index forced, and with the index and no
   iterative scan (rows returned: the under-fill).
The whole lookup (manifest, visibility checks, URLs) is not measured here: this is the ranking
step only. --fashion-mnist (the 70,000 real EfficientNet vectors) is not implemented yet.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import psycopg

from pipeline.local import postgres
from pipeline.local.processes import free_port
from pipeline.lookup.ranking import rank

DIM = 512
K = 10
BIG, SMALL = "big", "sml"  # prompt names of equal length: the COPY rows are fixed-size


def clustered(
    rng: np.random.Generator, centers: np.ndarray, n: int, sigma: float, chunk: int = 100_000
) -> np.ndarray:
    """n unit vectors: a uniformly chosen center plus noise of norm about sigma, normalized."""
    out = np.empty((n, centers.shape[1]), dtype=np.float32)
    scale = np.float32(sigma / np.sqrt(centers.shape[1]))
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        points = centers[rng.integers(len(centers), size=m)]
        points = points + rng.standard_normal((m, centers.shape[1]), dtype=np.float32) * scale
        out[start : start + m] = points / np.linalg.norm(points, axis=1, keepdims=True)
    return out


def copy_binary(vectors: np.ndarray, prompts: np.ndarray) -> bytes:
    """A COPY ... (FORMAT BINARY) stream of rows (id int8, prompt text, embedding vector):
    pgvector's binary form is int16 dim, int16 0, dim big-endian float4."""
    n, dim = vectors.shape
    row = np.dtype(
        [
            ("ncols", ">i2"),
            ("id_len", ">i4"),
            ("id", ">i8"),
            ("prompt_len", ">i4"),
            ("prompt", "S3"),
            ("vec_len", ">i4"),
            ("dim", ">i2"),
            ("unused", ">i2"),
            ("vec", ">f4", (dim,)),
        ]
    )
    rows = np.zeros(n, dtype=row)
    rows["ncols"] = 3
    rows["id_len"] = 8
    rows["id"] = np.arange(n)
    rows["prompt_len"] = 3
    rows["prompt"] = prompts
    rows["vec_len"] = 4 + 4 * dim
    rows["dim"] = dim
    rows["vec"] = vectors
    header = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
    return header + rows.tobytes() + (-1).to_bytes(2, "big", signed=True)


def literal(vector: np.ndarray) -> str:
    return "[" + ",".join(f"{x:.9g}" for x in vector) + "]"


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000, q))


def exact_answers(matrix: np.ndarray, queries: np.ndarray) -> tuple[list[list[int]], list[float]]:
    ids = np.arange(len(matrix))
    answers, times = [], []
    for q in queries:
        t0 = time.perf_counter()
        ranked = rank(matrix, ids, q, K)
        times.append(time.perf_counter() - t0)
        answers.append([int(i) for i in ranked.ids])
    return answers, times


SQL = (
    "WITH nearest AS MATERIALIZED ("
    " SELECT id, embedding <=> %(q)s::vector AS distance FROM items {where}"
    " ORDER BY embedding <=> %(q)s::vector LIMIT %(k)s)"
    " SELECT id FROM nearest"
    " ORDER BY distance, id"
)


def hnsw_answers(
    conn: psycopg.Connection, queries: np.ndarray, where: str, row_ids: np.ndarray | None
) -> tuple[list[list[int]], list[float]]:
    """Each query's ids as positions in the matrix the exact scan ranked (row_ids maps a table
    id to that position for a filtered prompt)."""
    sql = SQL.format(where=where)
    answers, times = [], []
    for q in queries:
        params = {"q": literal(q), "k": K}
        t0 = time.perf_counter()
        rows = conn.execute(sql, params, prepare=True).fetchall()
        times.append(time.perf_counter() - t0)
        got = [int(r[0]) for r in rows]
        answers.append([int(row_ids[i]) for i in got] if row_ids is not None else got)
    return answers, times


def quality(got: list[list[int]], truth: list[list[int]]) -> dict[str, float]:
    recall = [len(set(g) & set(t)) / K for g, t in zip(got, truth, strict=True)]
    return {
        "recall@10": statistics.fmean(recall),
        "identical_top10": statistics.fmean(g == t for g, t in zip(got, truth, strict=True)),
        "mean_rows": statistics.fmean(len(g) for g in got),
    }


def plan_of(conn: psycopg.Connection, where: str, query: np.ndarray) -> str:
    rows = conn.execute(
        f"EXPLAIN SELECT id FROM items {where} ORDER BY embedding <=> %(q)s::vector LIMIT {K}",
        {"q": literal(query)},
    ).fetchall()
    text = " ".join(r[0] for r in rows)
    return "hnsw index" if "items_hnsw" in text else "seq scan + sort"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--clusters", type=int, default=100)
    parser.add_argument("--sigma", type=float, default=0.5)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--m", type=int, default=16)
    parser.add_argument("--ef-construction", type=int, default=128)
    parser.add_argument("--ef-search", default="40,100,200,400,800")
    parser.add_argument("--filter-rows", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--fashion-mnist",
        action="store_true",
        help="the 70,000 real EfficientNet vectors of Fashion-MNIST: not implemented yet",
    )
    args = parser.parse_args()
    if args.fashion_mnist:
        parser.error("--fashion-mnist is not implemented yet (synthetic vectors only)")
    if not 0 < args.filter_rows < args.n:
        parser.error("--filter-rows must be between 0 and --n")
    ef_values = [int(v) for v in args.ef_search.split(",")]

    rng = np.random.default_rng(args.seed)
    centers = rng.standard_normal((args.clusters, DIM), dtype=np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    matrix = clustered(rng, centers, args.n, args.sigma)
    queries = clustered(rng, centers, args.queries, args.sigma)
    prompts = np.full(args.n, BIG.encode(), dtype="S3")
    small_rows = np.sort(rng.choice(args.n, size=args.filter_rows, replace=False))
    prompts[small_rows] = SMALL.encode()

    results: dict = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "load_before": os.getloadavg(),
        "command": " ".join(["python", "bench/scale_index.py", *sys.argv[1:]]),
        "n": args.n,
        "clusters": args.clusters,
        "sigma": args.sigma,
        "vectors_per_cluster": args.n / args.clusters,
        "filter_vectors_per_cluster": args.filter_rows / args.clusters,
    }
    base = Path(tempfile.mkdtemp(prefix="imgsim-pg-bench-"))
    base.chmod(0o755)
    server = postgres.start(
        base / "data",
        free_port(),
        log_path=base / "postgres.log",
        options={"shared_buffers": "1GB", "maintenance_work_mem": "2GB", "work_mem": "64MB"},
    )
    try:
        pg_version, vector_version = postgres.version(server)
        results["postgres"] = pg_version
        results["pgvector"] = vector_version
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute(
                f"CREATE TABLE items (id int8 PRIMARY KEY, prompt text NOT NULL,"
                f" embedding vector({DIM}) NOT NULL)"
            )
            t0 = time.perf_counter()
            with conn.cursor() as cur, cur.copy("COPY items FROM STDIN (FORMAT BINARY)") as cp:
                cp.write(copy_binary(matrix, prompts))
            results["load_s"] = time.perf_counter() - t0
            conn.execute("SET max_parallel_maintenance_workers = 1")
            t0 = time.perf_counter()
            conn.execute(
                "CREATE INDEX items_hnsw ON items USING hnsw (embedding vector_cosine_ops)"
                f" WITH (m = {args.m}, ef_construction = {args.ef_construction})"
            )
            results["index_build_s"] = time.perf_counter() - t0
            conn.execute("VACUUM ANALYZE items")
            sizes = conn.execute(
                "SELECT pg_relation_size('items_hnsw'), pg_total_relation_size('items')"
            ).fetchone()
            assert sizes is not None
            results["index_mb"] = sizes[0] / 2**20
            results["table_mb"] = (sizes[1] - sizes[0]) / 2**20
            results["matrix_mb"] = matrix.nbytes / 2**20
            print(json.dumps(results), flush=True)

            # 1. one prompt of N
            truth, times = exact_answers(matrix, queries)
            whole = [{"method": "exact scan", "p50_ms": pct(times, 50), "p95_ms": pct(times, 95)}]
            whole[0].update(quality(truth, truth))
            for ef in ef_values:
                conn.execute(f"SET hnsw.ef_search = {ef}")
                conn.execute("SET hnsw.iterative_scan = off")
                got, times = hnsw_answers(conn, queries, "", None)
                row = {"method": f"hnsw ef_search={ef}", "p50_ms": pct(times, 50)}
                row["p95_ms"] = pct(times, 95)
                row.update(quality(got, truth))
                whole.append(row)
                print(json.dumps(row), flush=True)
            results["one_prompt"] = whole

            # 2. the filter case
            where = f"WHERE prompt = '{SMALL}'"
            sub = matrix[small_rows]
            truth, times = exact_answers(sub, queries)
            pos = {int(r): i for i, r in enumerate(small_rows)}
            row_ids = np.full(args.n, -1, dtype=np.int64)
            row_ids[small_rows] = [pos[int(r)] for r in small_rows]
            cases = [{"method": "exact scan (numpy)", "p50_ms": pct(times, 50)}]
            cases[0]["p95_ms"] = pct(times, 95)
            cases[0].update(quality(truth, truth))
            conn.execute("SET hnsw.iterative_scan = relaxed_order")
            results["filter_planner_choice"] = plan_of(conn, where, queries[0])
            runs = [("planner's choice, relaxed_order, ef_search=40", "relaxed_order", False, 40)]
            runs += [
                (f"hnsw forced, relaxed_order, ef_search={ef}", "relaxed_order", True, ef)
                for ef in ef_values
            ]
            runs += [("hnsw forced, iterative_scan=off, ef_search=40", "off", True, 40)]
            for label, mode, forced, ef in runs:
                conn.execute(f"SET hnsw.iterative_scan = {mode}")
                conn.execute(f"SET hnsw.ef_search = {ef}")
                conn.execute(f"SET enable_seqscan = {'off' if forced else 'on'}")
                got, times = hnsw_answers(conn, queries, where, row_ids)
                row = {"method": label, "p50_ms": pct(times, 50), "p95_ms": pct(times, 95)}
                row.update(quality(got, truth))
                cases.append(row)
                print(json.dumps(row), flush=True)
            conn.execute("SET enable_seqscan = on")
            results["filter_case"] = cases
        results["load_after"] = os.getloadavg()
    finally:
        postgres.stop(server)
        shutil.rmtree(base, ignore_errors=True)
    print(json.dumps(results, indent=1))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
