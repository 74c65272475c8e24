"""The whole lookup of one large prompt, exact scan against the vector index, in one run.

    python bench/index_lookup.py [--n 100000] [--dim 512] [--queries 200] [--build-memory 4GB]
                                 [--json PATH]

Everything real on loopback: moto (the stack's tables and bucket, the template deployed), a
PostgreSQL + pgvector behind the RDS Data API emulator, and `SimilarityService.lookup` as the
API function runs it. One prompt of N synthetic unit vectors (bench/scale_index.py's clusters),
written as shards of 20,000 rows with their Images records; the index built by the sync's own
code (`IndexSync.build`: upserts through the Data API, then the HNSW build). Query images are
embedded images of another prompt (their vectors from the same clusters, not in the table).

Measured per query, warm (the exact scan's candidates already in memory, as in a warm
function): the whole lookup (manifest reads, the query's record and vector, ranking, the page's
record checks, presigned URLs) by `exact=true` and by the index, p50/p95, their ratio, and
recall@10 of the index's page against the exact one; the sync's build time split into the load
through the Data API and the index build.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for bench.* and tests.helpers
from bench.scale_index import clustered
from pipeline.index_sync.sync import IndexSync
from pipeline.local import postgres
from pipeline.local.config import isolated_settings, vector_db_arns
from pipeline.local.deploy import StackSpec, deploy
from pipeline.local.moto_server import MotoServer
from pipeline.local.processes import free_port, stop_group
from pipeline.local.vector_db import start_rds_data
from pipeline.lookup.similarity import SimilarityService
from pipeline.storage.embeddings_table import EmbeddingStore
from tests.helpers import commit_shard, embedded_records

PROMPT, QUERY_PROMPT, MODEL = "a large catalogue", "bench queries", "bench-synthetic-512"
SHARD_ROWS = 20_000
K = 10


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return statistics.median(ordered) * 1000, p95 * 1000


def load(settings, n: int, dim: int, queries: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((100, dim)).astype(np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    matrix = clustered(rng, centers, n + queries, 0.5)
    ids = [f"img{i:07d}" for i in range(n)]
    for start in range(0, n, SHARD_ROWS):
        chunk = {ids[i]: matrix[i] for i in range(start, min(n, start + SHARD_ROWS))}
        commit_shard(settings, PROMPT, MODEL, f"run-{start // SHARD_ROWS}", chunk, set())
    embedded_records(settings, ids, PROMPT)
    query_ids = [f"query{i:05d}" for i in range(queries)]
    embeddings = EmbeddingStore(settings)
    for n_query, image_id in enumerate(query_ids):
        embeddings.put(image_id, MODEL, matrix[n + n_query], None, "etag-" + image_id, "now")
    embedded_records(settings, query_ids, QUERY_PROMPT)
    return query_ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    # a 1M x 512 graph outgrows 2 GB (docs/performance.md, 1M x 512), and a graph larger than
    # the build's memory is built far slower
    parser.add_argument("--build-memory", default="4GB", help="IMGSIM_VECTOR_INDEX_BUILD_MEMORY")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    # stopped by its process group: the servers it started stop with it (the `finally` below)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    base = Path(tempfile.mkdtemp(prefix="imgsim-bench-lookup-"))
    base.chmod(0o755)  # as root the server runs as an unprivileged user that must enter it
    moto = MotoServer("127.0.0.1", free_port()).start(base / "moto.log")
    server = postgres.start(base / "pg", free_port(), log_path=base / "postgres.log")
    rds_pid = None
    try:
        cluster, secret = vector_db_arns("us-east-1")
        settings = replace(
            isolated_settings(moto.url, "bench"),
            vector_db_cluster_arn=cluster,
            vector_db_secret_arn=secret,
            vector_index_threshold=1,
            exact_scan_max_rows=args.n + 1,
            vector_index_build_memory=args.build_memory,
        )
        postgres.create_database(server, settings.vector_db_name)
        port = free_port()
        rds_pid = start_rds_data(port, server, settings, base / "rds-data.log", dict(os.environ))
        settings = settings.with_endpoint(f"http://127.0.0.1:{port}", ("rds-data",))
        deploy(settings, StackSpec(name="imgsim-bench", code_bucket="imgsim-bench-code"))
        started = time.perf_counter()
        query_ids = load(settings, args.n, args.dim, args.queries, args.seed)
        loaded_s = time.perf_counter() - started
        report = measure(settings, query_ids)
        report.update(
            {
                "n": args.n,
                "dim": args.dim,
                "queries": args.queries,
                "write_shards_and_records_s": round(loaded_s, 1),
                "build_memory": args.build_memory,
                "date": datetime.now(UTC).isoformat(timespec="minutes"),
                "machine": f"{platform.machine()}, {os.cpu_count()} cores",
                "load_average": os.getloadavg(),
            }
        )
        print(json.dumps(report, indent=2))
        if args.json:
            args.json.write_text(json.dumps(report, indent=2))
    finally:
        if rds_pid is not None:
            stop_group(rds_pid)
        postgres.stop(server)
        moto.stop()
        shutil.rmtree(base, ignore_errors=True)


def measure(settings, query_ids: list[str]) -> dict:
    sync = IndexSync(settings)
    sync.index.prepare_database()
    hnsw_s: list[float] = []
    build_index = sync.index.build_index

    def timed_build_index(table: str) -> None:  # the build's second part, timed on its own
        t0 = time.perf_counter()
        build_index(table)
        hnsw_s.append(time.perf_counter() - t0)

    sync.index.build_index = timed_build_index  # type: ignore[method-assign]
    started = time.perf_counter()
    built = sync.build(PROMPT, MODEL)
    build_s = time.perf_counter() - started
    service = SimilarityService.from_settings(settings)
    service.lookup(query_ids[0], PROMPT, K, exact=True)  # the warm function's cache
    service.lookup(query_ids[0], PROMPT, K)
    exact_t, index_t, recall, same = [], [], [], 0
    for query in query_ids:
        t0 = time.perf_counter()
        exact = service.lookup(query, PROMPT, K, exact=True)
        t1 = time.perf_counter()
        fast = service.lookup(query, PROMPT, K)
        t2 = time.perf_counter()
        assert (exact["ranking"], fast["ranking"]) == ("exact", "hnsw")
        exact_t.append(t1 - t0)
        index_t.append(t2 - t1)
        truth = [r["image_id"] for r in exact["results"]]
        got = [r["image_id"] for r in fast["results"]]
        recall.append(len(set(truth) & set(got)) / len(truth))
        same += truth == got
    e50, e95 = percentiles(exact_t)
    h50, h95 = percentiles(index_t)
    return {
        "build_total_s": round(build_s, 1),
        "build_load_through_data_api_s": round(build_s - sum(hnsw_s), 1),
        "build_hnsw_index_s": round(sum(hnsw_s), 1),
        "index_rows": built.index_rows,
        "whole_lookup_exact_p50_ms": round(e50, 1),
        "whole_lookup_exact_p95_ms": round(e95, 1),
        "whole_lookup_hnsw_p50_ms": round(h50, 1),
        "whole_lookup_hnsw_p95_ms": round(h95, 1),
        "p95_ratio_exact_over_hnsw": round(e95 / h95, 2),
        "recall_at_10": round(float(np.mean(recall)), 4),
        "identical_top10": round(same / len(query_ids), 4),
    }


if __name__ == "__main__":
    main()
