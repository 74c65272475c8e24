"""Similarity lookup latency, against its baselines, in one run.

    python bench/similarity.py [--dim 512] [--sizes 10000,100000,1000000] [--seed-size 10000]

1. warm lookups (the Lambda's in-memory path: candidate cache hit, exact top-10, presigned
   URLs) at each size, p50/p95, beside faiss.IndexFlatIP.search on the same matrix, the
   practical limit of brute force;
2. the seed design at --seed-size on the local stack (moto server): GSI query of the prompt,
   BatchGetItem of embeddings stored as List<Decimal>, cosine in Python; against our full
   lookup (DynamoDB GetItems + warm top-k) on the same stack;
3. a cold lookup at 100k (empty cache: read the prompt's shard from S3 and parse it) against
   just reading the shard's bytes.
Ratios are against baselines measured in the same run. Everything runs on loopback.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path
from tempfile import mkdtemp

import numpy as np

from pipeline import aws
from pipeline.local.config import isolated_settings
from pipeline.local.deploy import StackSpec, deploy
from pipeline.local.moto_server import MotoServer
from pipeline.local.processes import free_port
from pipeline.lookup.candidates import CandidateCache, Candidates
from pipeline.lookup.ranking import rank
from pipeline.lookup.similarity import SimilarityService
from pipeline.settings import Settings
from pipeline.storage.bucket import ObjectStore
from pipeline.storage.dynamodb_codec import serialize_item
from pipeline.storage.manifests_table import Manifest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.helpers
from tests.helpers import commit_shard, embedded_image

PROMPT, MODEL = "a red fox", "clip-vit-b-32-random-init-seed0"


def unit_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    matrix = np.random.default_rng(seed).standard_normal((n, dim), dtype=np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return (
        statistics.median(ordered) * 1000,
        ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))] * 1000,
    )


def timed(fn, repeats: int) -> list[float]:
    out = []
    for i in range(repeats):
        start = time.perf_counter()
        fn(i)
        out.append(time.perf_counter() - start)
    return out


def warm_one(n: int, dim: int, objects: ObjectStore) -> dict:
    import faiss

    matrix = unit_vectors(n, dim, seed=n)
    ids = np.asarray([f"img{i:07d}" for i in range(n)], dtype=object)
    keys = np.asarray([f"uploads/img{i:07d}.jpg" for i in range(n)], dtype=object)
    etags = np.full(n, "etag", dtype=object)
    candidates = Candidates(version=1, ids=ids, matrix=matrix, s3_keys=keys, etags=etags)
    queries = unit_vectors(64, dim, seed=7)
    repeats = 40 if n >= 1_000_000 else 200

    def ours(i: int) -> None:
        ranked = rank(candidates.matrix, candidates.ids, queries[i % 64], 10, exclude="x")
        for image_id in ranked.ids:  # presign each result, as the API does
            objects.presign_get(f"uploads/{image_id}.jpg", 900)

    index = faiss.IndexFlatIP(dim)
    index.add(matrix)

    def flat(i: int) -> None:
        index.search(queries[i % 64][None, :], 11)

    ours(0), flat(0)
    p50, p95 = percentiles(timed(ours, repeats))
    f50, f95 = percentiles(timed(flat, repeats))
    return {
        "vectors": n,
        "ours_p50_ms": p50,
        "ours_p95_ms": p95,
        "faiss_p50_ms": f50,
        "faiss_p95_ms": f95,
        "ratio_p50": p50 / f50,
    }


def seed_design_lookup(
    settings: Settings, query: list[float], exclude: str
) -> list[tuple[float, str]]:
    """The seed's path: GSI query, BatchGetItem of List<Decimal> embeddings, Python cosine."""
    ddb = aws.client(settings, "dynamodb")
    ids, kwargs = (
        [],
        {
            "TableName": settings.images_table,
            "IndexName": "Prompt_GSI",
            "KeyConditionExpression": "prompt = :p",
            "ExpressionAttributeValues": {":p": {"S": PROMPT}},
        },
    )
    while True:
        page = ddb.query(**kwargs)
        ids += [item["image_id"]["S"] for item in page["Items"]]
        if "LastEvaluatedKey" not in page:
            break
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    scored = []
    for start in range(0, len(ids), 100):
        keys = [{"embedding_id": {"S": i}} for i in ids[start : start + 100]]
        request = {"seed_embeddings": {"Keys": keys}}
        while request:
            response = ddb.batch_get_item(RequestItems=request)
            for item in response["Responses"].get("seed_embeddings", []):
                vector = [float(Decimal(v["N"])) for v in item["vector"]["L"]]
                dot = sum(a * b for a, b in zip(query, vector, strict=True))
                norm = sum(b * b for b in vector) ** 0.5
                scored.append((dot / norm, item["embedding_id"]["S"]))
            request = response.get("UnprocessedKeys") or None
    scored.sort(key=lambda s: (-s[0], s[1]))
    return [s for s in scored if s[1] != exclude][:10]


def local_stack(moto: MotoServer, name: str) -> Settings:
    settings = isolated_settings(moto.url, f"bench-{name}")
    deploy(settings, StackSpec(name=f"bench-{name}", code_bucket=f"code-{name}"))
    return settings


def versus_seed(moto: MotoServer, n: int, dim: int) -> dict:
    settings = local_stack(moto, "seed")
    ddb = aws.client(settings, "dynamodb")
    ddb.create_table(
        TableName="seed_embeddings",
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "embedding_id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "embedding_id", "KeyType": "HASH"}],
    )
    matrix = unit_vectors(n, dim, seed=1)
    ids = [f"img{i:06d}" for i in range(n)]
    for start in range(0, n, 25):
        ddb.batch_write_item(
            RequestItems={
                settings.images_table: [
                    {"PutRequest": {"Item": serialize_item(embedded_image(i, PROMPT).to_item())}}
                    for i in ids[start : start + 25]
                ],
                "seed_embeddings": [
                    {
                        "PutRequest": {
                            "Item": {
                                "embedding_id": {"S": i},
                                "vector": {"L": [{"N": f"{v:.8f}"} for v in row]},
                            }
                        }
                    }
                    for i, row in zip(
                        ids[start : start + 25], matrix[start : start + 25], strict=True
                    )
                ],
            }
        )
    commit_shard(
        settings,
        PROMPT,
        MODEL,
        "run-0",
        dict(zip(ids, matrix, strict=True)),
        embeddings_for={ids[0]},
    )
    service = SimilarityService.from_settings(settings)
    service.lookup(ids[0], PROMPT, k=10)  # warm the cache
    ours = timed(lambda i: service.lookup(ids[0], PROMPT, k=10), 30)
    query = matrix[0].tolist()
    seed_results: list[tuple[float, str]] = []
    seed = timed(lambda i: seed_results.extend(seed_design_lookup(settings, query, ids[0])), 1)
    ours_ids = [r["image_id"] for r in service.lookup(ids[0], PROMPT, k=10)["results"]]
    seed_ids = [i for _, i in seed_results]
    return {
        "vectors": n,
        "ours_full_lookup_p50_ms": statistics.median(ours) * 1000,
        "seed_design_p50_ms": statistics.median(seed) * 1000,
        "speedup": statistics.median(seed) / statistics.median(ours),
        "same_top10": ours_ids == seed_ids,
    }


def cold(moto: MotoServer, n: int, dim: int) -> dict:
    settings = local_stack(moto, "cold")
    matrix = unit_vectors(n, dim, seed=3)
    ids = [f"img{i:07d}" for i in range(n)]
    key = commit_shard(
        settings, PROMPT, MODEL, "run-0", dict(zip(ids, matrix, strict=True)), embeddings_for=set()
    )
    s3 = aws.client(settings, "s3")
    size = s3.head_object(Bucket=settings.bucket, Key=key)["ContentLength"]
    manifest = Manifest(
        prompt=PROMPT, model_id=MODEL, shards=(key,), shard_rows={key: n}, version=1
    )
    from pipeline.storage.shards import ShardStore

    store = ShardStore(settings)
    from pipeline.lookup.similarity import CANDIDATE_COLUMNS

    def bare(i: int) -> None:
        s3.get_object(Bucket=settings.bucket, Key=key)["Body"].read()

    def cold_lookup(i: int) -> None:
        candidates = CandidateCache(lambda k: store.read(k, CANDIDATE_COLUMNS)).get(manifest)
        rank(candidates.matrix, candidates.ids, matrix[5], 10, exclude=ids[5])

    bare(0)
    read = statistics.median(timed(bare, 5))
    lookup = statistics.median(timed(cold_lookup, 5))
    return {
        "vectors": n,
        "shard_mb": size / 1e6,
        "bare_read_ms": read * 1000,
        "cold_lookup_ms": lookup * 1000,
        "ratio": lookup / read,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--seed-size", type=int, default=10000)
    parser.add_argument("--cold-size", type=int, default=100000)
    args = parser.parse_args()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    moto = MotoServer("127.0.0.1", free_port()).start(Path(mkdtemp()) / "moto.log")
    try:
        objects = ObjectStore(Settings(bucket="any").with_endpoint(moto.url))
        rows = [warm_one(int(n), args.dim, objects) for n in args.sizes.split(",")]
        print(f"warm lookup, k=10, dim {args.dim} (ms)")
        print(
            f"{'vectors':>9} {'ours p50':>9} {'ours p95':>9} {'faiss p50':>10} "
            f"{'faiss p95':>10} {'ours/faiss':>11}"
        )
        for r in rows:
            print(
                f"{r['vectors']:>9} {r['ours_p50_ms']:>9.2f} {r['ours_p95_ms']:>9.2f} "
                f"{r['faiss_p50_ms']:>10.2f} {r['faiss_p95_ms']:>10.2f} {r['ratio_p50']:>10.2f}x"
            )
        seed = versus_seed(moto, args.seed_size, args.dim)
        print(
            f"seed design at {seed['vectors']}: {seed['seed_design_p50_ms']:.0f} ms; ours "
            f"(full lookup incl. DynamoDB on moto) {seed['ours_full_lookup_p50_ms']:.1f} ms: "
            f"{seed['speedup']:.0f}x faster; same top-10: {seed['same_top10']}"
        )
        cold_row = cold(moto, args.cold_size, args.dim)
        print(
            f"cold lookup at {cold_row['vectors']} ({cold_row['shard_mb']:.0f} MB shard): "
            f"{cold_row['cold_lookup_ms']:.0f} ms vs bare read {cold_row['bare_read_ms']:.0f} "
            f"ms: {cold_row['ratio']:.2f}x"
        )
        print(json.dumps({"warm": rows, "seed": seed, "cold": cold_row}))
    finally:
        moto.stop()


if __name__ == "__main__":
    main()
