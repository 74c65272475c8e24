"""The exact scan against pgvector's HNSW index on the local PostgreSQL, in one run.

    python bench/scale_index.py [--n 100000] [--clusters 100] [--sigma 0.5] [--queries 1000]
        [--m 16] [--ef-construction 128] [--ef-search 40,100,200,400,800] [--filter-rows 10000]
        [--build-workers 1] [--maintenance-work-mem 4GB] [--json FILE]
    python bench/scale_index.py --fashion-mnist [--dataset DIR] [--model NAME] [--cache-dir DIR]

Synthetic data: N 512-d unit vectors in clusters on the unit sphere. Cluster centers are
uniform on the sphere (normalized Gaussians); each vector picks a center uniformly and is
normalize(center + sigma * g), g ~ N(0, I/d), so its noise has norm about sigma (0.5: a
vector's cosine to its center is about 0.89, to another of its cluster about 0.8, to other
clusters about 0). The held-out queries come from the same distribution and are not in the
table. Recall depends on this shape: with fewer than k vectors per cluster in what a query
searches, the tail of its top-k is near-random vectors of other clusters, which no index finds
reliably; the run prints the vectors per cluster of each case.

--fashion-mnist: Fashion-MNIST's 70,000 images (Debian's dataset-fashion-mnist, read by
pipeline/evaluate's loader) embedded in this process by --model's artifact as the evaluation
harness does, kept in --cache-dir under the model's content key and the data's digest (a
second run reads them); --queries of them, stratified by label, are held out as the queries.

Measured, per query, against the exact scan (pipeline/lookup/ranking.py's `rank` over the
in-memory matrix, the ground truth):
1. one prompt of all rows: the exact scan, and HNSW (vector_cosine_ops, m, ef_construction)
   at each ef_search: p50/p95 of the ranking step (for HNSW, the SQL query's round trip on
   loopback), recall@10, the share of queries whose top-10 is identical (same ids, same order);
   the index's build time (leader plus --build-workers parallel workers; the graph must fit in
   --maintenance-work-mem), its size, and the build's progress while it runs;
2. the filter case: a prompt of --filter-rows rows inside the same table (a `WHERE prompt =`
   filter), with the planner's own plan, with the index forced, and with the index and no
   iterative scan (rows returned: the under-fill).
The machine's load average and memory in use are sampled through the run. The rows are COPY'd
in chunks, so memory holds the matrix and one chunk. The whole lookup (manifest, visibility
checks, URLs) is not timed here: each table row is made by `result_row`, where its columns
would go, timed through the lookup's entry point for the same queries.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
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
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist
EMBEDDING_CACHE = Path.home() / ".cache" / "imgsim" / "scale-index"


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


COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
COPY_TRAILER = (-1).to_bytes(2, "big", signed=True)


def copy_rows(vectors: np.ndarray, prompts: np.ndarray, first_id: int) -> bytes:
    """Rows (id int8, prompt text, embedding vector) of a COPY ... (FORMAT BINARY) stream,
    ids first_id onwards, without the stream's header and trailer (one chunk of a streamed
    COPY): pgvector's binary form is int16 dim, int16 0, dim big-endian float4."""
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
    rows["id"] = np.arange(first_id, first_id + n)
    rows["prompt_len"] = 3
    rows["prompt"] = prompts
    rows["vec_len"] = 4 + 4 * dim
    rows["dim"] = dim
    rows["vec"] = vectors
    return rows.tobytes()


def copy_binary(vectors: np.ndarray, prompts: np.ndarray) -> bytes:
    """A whole COPY ... (FORMAT BINARY) stream (small tables; `load` streams big ones)."""
    return COPY_HEADER + copy_rows(vectors, prompts, 0) + COPY_TRAILER


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


class Sampler:
    """The 1-minute load average and the machine's memory in use (every user's), sampled in the
    background while a run lasts: the latencies move with what else runs on the machine."""

    def __init__(self, every_s: float = 15.0) -> None:
        self.every_s = every_s
        self.load: list[float] = []
        self.mem_gb: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while True:
            self.load.append(os.getloadavg()[0])
            self.mem_gb.append(used_memory_gb())
            if self._stop.wait(self.every_s):
                return

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict[str, float]:
        return {
            "load1_min": min(self.load),
            "load1_median": statistics.median(self.load),
            "load1_max": max(self.load),
            "machine_memory_used_gb_max": max(self.mem_gb),
        }


def used_memory_gb() -> float:
    lines = Path("/proc/meminfo").read_text().splitlines()
    info = {line.split(":")[0]: int(line.split()[1]) for line in lines}
    return (info["MemTotal"] - info["MemAvailable"]) / 2**20


def load(conn: psycopg.Connection, matrix: np.ndarray, prompts: np.ndarray, chunk: int) -> None:
    """COPY the rows in chunks: one chunk's bytes at a time besides the matrix."""
    with conn.cursor() as cur, cur.copy("COPY items FROM STDIN (FORMAT BINARY)") as cp:
        cp.write(COPY_HEADER)
        for start in range(0, len(matrix), chunk):
            end = min(start + chunk, len(matrix))
            cp.write(copy_rows(matrix[start:end], prompts[start:end], start))
        cp.write(COPY_TRAILER)


def watch_build(dsn: str, done: threading.Event, every_s: float, seen: dict) -> None:
    """Print the build's progress (pgvector reports tuples loaded into the graph) and count the
    parallel workers at work, until done."""
    t0 = time.perf_counter()
    with psycopg.connect(dsn, autocommit=True) as conn:
        while not done.wait(every_s):
            progress = conn.execute(
                "SELECT phase, tuples_done, tuples_total FROM pg_stat_progress_create_index"
            ).fetchone()
            workers = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'parallel worker'"
            ).fetchone()
            assert workers is not None
            seen["parallel_workers_max"] = max(seen.get("parallel_workers_max", 0), workers[0])
            sample = {
                "build_elapsed_s": round(time.perf_counter() - t0),
                "phase": progress[0] if progress else None,
                "tuples_done": progress[1] if progress else None,
                "parallel_workers": workers[0],
                "load1": os.getloadavg()[0],
            }
            seen.setdefault("progress", []).append(sample)
            print(json.dumps(sample), flush=True)


def build(server: postgres.Server, conn: psycopg.Connection, args: argparse.Namespace) -> dict:
    """CREATE INDEX with args.build_workers parallel workers besides the leader (which builds
    too); pgvector says so in a notice when the graph outgrows maintenance_work_mem."""
    notices: list[str] = []
    conn.add_notice_handler(lambda diag: notices.append(str(diag.message_primary)))
    conn.execute(f"SET max_parallel_maintenance_workers = {args.build_workers}")
    # The vectors are TOASTed out of line, so the heap looks small to the planner's size rule
    # for parallel builds: name the workers on the table instead.
    conn.execute(f"ALTER TABLE items SET (parallel_workers = {args.build_workers})")
    conn.execute("SET client_min_messages = debug1")  # pgvector's "using N parallel workers"
    seen: dict = {}
    done = threading.Event()
    watcher = threading.Thread(
        target=watch_build, args=(server.dsn, done, args.progress_s, seen), daemon=True
    )
    watcher.start()
    t0 = time.perf_counter()
    try:
        conn.execute(
            "CREATE INDEX items_hnsw ON items USING hnsw (embedding vector_cosine_ops)"
            f" WITH (m = {args.m}, ef_construction = {args.ef_construction})"
        )
    finally:
        done.set()
        watcher.join()
        conn.execute("RESET client_min_messages")
    return {
        "index_build_s": time.perf_counter() - t0,
        "build_workers": args.build_workers,
        "parallel_workers_seen": seen.get("parallel_workers_max", 0),
        "maintenance_work_mem": args.maintenance_work_mem,
        "build_notices": notices,
    }


def result_row(
    method: str, times: list[float], got: list[list[int]], truth: list[list[int]]
) -> dict:
    """One line of a table: the ranking step's latency and the answers' quality. A whole-lookup
    latency (manifest, visibility checks, URLs) belongs here as further keys, timed through the
    lookup's own entry point for the same queries."""
    row: dict = {"method": method, "p50_ms": pct(times, 50), "p95_ms": pct(times, 95)}
    row.update(quality(got, truth))
    return row


def one_prompt(
    conn: psycopg.Connection, matrix: np.ndarray, queries: np.ndarray, ef_values: list[int]
) -> list[dict]:
    """The whole table as one prompt: the exact scan, and HNSW at each ef_search."""
    truth, times = exact_answers(matrix, queries)
    rows = [result_row("exact scan", times, truth, truth)]
    print(json.dumps(rows[0]), flush=True)
    conn.execute("SET hnsw.iterative_scan = off")
    for ef in ef_values:
        conn.execute(f"SET hnsw.ef_search = {ef}")
        got, times = hnsw_answers(conn, queries, "", None)
        rows.append(result_row(f"hnsw ef_search={ef}", times, got, truth))
        print(json.dumps(rows[-1]), flush=True)
    return rows


def filter_case(
    conn: psycopg.Connection,
    matrix: np.ndarray,
    queries: np.ndarray,
    small_rows: np.ndarray,
    ef_values: list[int],
) -> tuple[str, list[dict]]:
    """The small prompt inside the table: the planner's own plan, the index forced at each
    ef_search with an iterative scan, and the index without one (the under-fill)."""
    where = f"WHERE prompt = '{SMALL}'"
    truth, times = exact_answers(matrix[small_rows], queries)
    row_ids = np.full(len(matrix), -1, dtype=np.int64)
    row_ids[small_rows] = np.arange(len(small_rows))
    rows = [result_row("exact scan (numpy)", times, truth, truth)]
    # pgvector's cost estimate depends on ef_search: the plan under the run's own settings
    conn.execute("SET hnsw.iterative_scan = relaxed_order")
    conn.execute("SET hnsw.ef_search = 40")
    conn.execute("SET enable_seqscan = on")
    choice = plan_of(conn, where, queries[0])
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
        rows.append(result_row(label, times, got, truth))
        print(json.dumps(rows[-1]), flush=True)
    conn.execute("SET enable_seqscan = on")
    return choice, rows


def run(
    matrix: np.ndarray, queries: np.ndarray, small_rows: np.ndarray, args: argparse.Namespace
) -> dict:
    """Load the matrix as one table (the small prompt's rows marked), build HNSW, measure."""
    n, dim = matrix.shape
    prompts = np.full(n, BIG.encode(), dtype="S3")
    prompts[small_rows] = SMALL.encode()
    ef_values = [int(v) for v in args.ef_search.split(",")]
    results: dict = {}
    base = Path(tempfile.mkdtemp(prefix="imgsim-pg-bench-"))
    base.chmod(0o755)
    server = postgres.start(
        base / "data",
        free_port(),
        log_path=base / "postgres.log",
        options={
            "shared_buffers": "1GB",
            "maintenance_work_mem": args.maintenance_work_mem,
            "work_mem": "64MB",
        },
    )
    try:
        results["postgres"], results["pgvector"] = postgres.version(server)
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute(
                f"CREATE TABLE items (id int8 PRIMARY KEY, prompt text NOT NULL,"
                f" embedding vector({dim}) NOT NULL)"
                " WITH (autovacuum_enabled = off)"  # the run vacuums once, after the build
            )
            t0 = time.perf_counter()
            load(conn, matrix, prompts, args.copy_chunk)
            results["load_s"] = time.perf_counter() - t0
            print(json.dumps({"load_s": results["load_s"]}), flush=True)
            results.update(build(server, conn, args))
            conn.execute("VACUUM ANALYZE items")
            sizes = conn.execute(
                "SELECT pg_relation_size('items_hnsw'), pg_total_relation_size('items')"
            ).fetchone()
            assert sizes is not None
            results["index_mb"] = sizes[0] / 2**20
            results["table_mb"] = (sizes[1] - sizes[0]) / 2**20
            results["matrix_mb"] = matrix.nbytes / 2**20
            print(json.dumps(results), flush=True)
            results["one_prompt"] = one_prompt(conn, matrix, queries, ef_values)
            choice, rows = filter_case(conn, matrix, queries, small_rows, ef_values)
            results["filter_planner_choice"], results["filter_case"] = choice, rows
    finally:
        postgres.stop(server)
        shutil.rmtree(base, ignore_errors=True)
    return results


def synthetic(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, dict]:
    rng = np.random.default_rng(args.seed)
    centers = rng.standard_normal((args.clusters, DIM), dtype=np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    matrix = clustered(rng, centers, args.n, args.sigma)
    queries = clustered(rng, centers, args.queries, args.sigma)
    about = {
        "data": f"synthetic, {args.clusters} clusters, sigma {args.sigma}",
        "clusters": args.clusters,
        "sigma": args.sigma,
        "vectors_per_cluster": args.n / args.clusters,
        "filter_vectors_per_cluster": args.filter_rows / args.clusters,
    }
    return matrix, queries, about


def data_digest(root: Path) -> str:
    """The IDX files' names and bytes: a changed copy of the data set is another cache entry."""
    digest = hashlib.sha256()
    for path in sorted(root.glob("*-ubyte*")):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def cache_path(root: Path, model: str, cache_dir: Path) -> Path:
    """Where a data set's vectors are kept: keyed by the model's content key (its build
    arguments, code and weights, as its artifact is) and the data's digest."""
    from sagemaker_jobs.artifacts import NAMED, content_key

    if model not in NAMED:
        raise ValueError(f"unknown model {model!r}; known: {', '.join(NAMED)}")
    return cache_dir / f"{root.name}-{model}-{content_key(NAMED[model])}-{data_digest(root)}.npz"


def cached(
    path: Path, compute: Callable[[], tuple[np.ndarray, list[str]]]
) -> tuple[np.ndarray, list[str], bool]:
    """(vectors, labels, whether computed now): from path if it is there, else computed and
    written there whole (a partial file renamed into place)."""
    if path.exists():
        with np.load(path) as kept:
            return kept["vectors"], [str(x) for x in kept["labels"]], False
    vectors, labels = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    with partial.open("wb") as out:
        np.savez(out, vectors=vectors, labels=np.asarray(labels))
    os.replace(partial, path)
    return vectors, labels, True


def embed_dataset(root: Path, model: str) -> tuple[np.ndarray, list[str]]:
    """A labelled data set's vectors (in `load_dataset`'s order) and labels, embedded in this
    process with the model's artifact, as the evaluation harness does."""
    from pipeline.evaluate import in_process
    from pipeline.evaluate.datasets import load_dataset
    from pipeline.evaluate.harness import resolve_model

    data = load_dataset(root)
    artifact = resolve_model(model)
    t0 = time.perf_counter()
    done = [0]

    def progress(count: int) -> None:
        done[0] += count
        if done[0] % 5_000 < count:
            rate = done[0] / (time.perf_counter() - t0)
            print(json.dumps({"embedded": done[0], "of": len(data.images), "per_s": rate}))
            sys.stdout.flush()

    with tempfile.TemporaryDirectory(prefix="imgsim-bench-embed-") as work:
        model_ = in_process.load_model(artifact, Path(work))
        return in_process.embed(model_, data.images, progress), data.labels


def fashion_mnist(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, dict]:
    """Fashion-MNIST's 70,000 images as vectors: args.queries of them (stratified by label,
    seeded) held out as queries, the rest the table."""
    from pipeline.evaluate.datasets import stratified_sample

    if not args.dataset.is_dir():
        raise SystemExit(
            f"{args.dataset} is missing: apt-get install dataset-fashion-mnist (Debian)"
        )
    path = cache_path(args.dataset, args.model, args.cache_dir)
    t0 = time.perf_counter()
    vectors, labels, computed = cached(path, lambda: embed_dataset(args.dataset, args.model))
    about: dict = {"embedding_cache": str(path), "embedded_now": computed}
    about["vectors_s"] = time.perf_counter() - t0
    held_out = stratified_sample(labels, args.queries, args.seed)
    keep = np.ones(len(vectors), dtype=bool)
    keep[held_out] = False
    about.update({"data": f"{args.dataset.name}, {args.model}", "model": args.model})
    return np.ascontiguousarray(vectors[keep]), vectors[held_out], about


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
    parser.add_argument(
        "--build-workers",
        type=int,
        default=1,
        help="max_parallel_maintenance_workers: parallel workers besides the leader",
    )
    parser.add_argument(
        "--maintenance-work-mem",
        default="4GB",
        help="must hold the HNSW graph (about the index's size), or the build slows down",
    )
    parser.add_argument("--copy-chunk", type=int, default=50_000, help="rows per COPY write")
    parser.add_argument("--progress-s", type=float, default=60.0, help="build progress every")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--fashion-mnist",
        action="store_true",
        help="Fashion-MNIST's 70,000 images embedded by --model instead of synthetic vectors"
        " (--n, --clusters, --sigma do not apply)",
    )
    parser.add_argument("--dataset", type=Path, default=FASHION_MNIST)
    parser.add_argument("--model", default="efficientnet-lite0-imagenet")
    parser.add_argument("--cache-dir", type=Path, default=EMBEDDING_CACHE)
    args = parser.parse_args()

    results: dict = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "command": " ".join(["python", "bench/scale_index.py", *sys.argv[1:]]),
    }
    t0 = time.perf_counter()
    with Sampler() as sampler:
        matrix, queries, about = fashion_mnist(args) if args.fashion_mnist else synthetic(args)
        if not 0 < args.filter_rows < len(matrix):
            parser.error(f"--filter-rows must be between 0 and the table's {len(matrix)} rows")
        results["n"], results["dim"] = matrix.shape
        results.update(about)
        print(json.dumps(results), flush=True)
        rng = np.random.default_rng(args.seed + 1)
        small_rows = np.sort(rng.choice(len(matrix), size=args.filter_rows, replace=False))
        results.update(run(matrix, queries, small_rows, args))
    results["wall_s"] = time.perf_counter() - t0
    results.update(sampler.summary())
    results["python_peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(json.dumps(results, indent=1))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
