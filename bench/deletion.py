"""How long a deletion takes to leave the results, and to leave the shards.

    python bench/deletion.py [--rows 20000] [--dim 512] [--shards 4] [--deletions 20]

On the local stack (moto server on loopback, the event pump as the SQS event source mapping
with the local stack's 2 s long poll, the similarity service warm in this process):

1. events to invisible: an object of one of the query's current top results is removed from
   the bucket; the clock runs from the DeleteObject call until a lookup no longer returns the
   image (S3 notification -> SQS -> pump -> ingest handler -> deletion marker);
2. DELETE /images/{id}'s path (pipeline.deletion.deleter.Deleter.delete_image): the call,
   after which the next lookup already leaves the image out;
3. compaction of the prompt with the tombstones those deletions left: its shards merged into
   one without the deleted rows, the manifest swapped, the old files deleted.

On AWS, S3 event delivery and the Lambda's SQS polling add their own latency to (1); (2) and
(3) are what the code does.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from tempfile import mkdtemp
from typing import Any

import numpy as np

from lambdas.ingest.handler import make_handler
from pipeline import aws
from pipeline.deletion.deleter import Deleter
from pipeline.embedding.compaction import Compactor
from pipeline.ingest.ingestor import Ingestor
from pipeline.local.config import isolated_settings
from pipeline.local.deploy import StackSpec, deploy
from pipeline.local.event_pump import EventPump
from pipeline.local.moto_server import MotoServer
from pipeline.local.processes import free_port
from pipeline.lookup.similarity import SimilarityService
from pipeline.settings import Settings
from pipeline.storage.manifests_table import ManifestStore
from pipeline.storage.shards import ShardStore

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.helpers
from tests.helpers import commit_shard, drain_messages, embedded_records

PROMPT, MODEL = "a red fox", "clip-vit-b-32-random-init-seed0"
QUERY = "img0000000"


def world(moto: MotoServer, rows: int, dim: int, shards: int, deletions: int) -> Settings:
    """A prompt of `rows` embedded images in `shards` shards; objects for the ones that go."""
    settings = isolated_settings(moto.url, "bench-deletion")
    deploy(settings, StackSpec(name="bench-deletion", code_bucket="code-deletion"))
    rng = np.random.default_rng(0)
    ids = [f"img{i:07d}" for i in range(rows)]
    matrix = rng.standard_normal((rows, dim), dtype=np.float32)
    per = -(-rows // shards)
    for n in range(shards):
        chunk = {i: matrix[j] for j, i in enumerate(ids) if j // per == n}
        commit_shard(settings, PROMPT, MODEL, f"run-{n}", chunk, embeddings_for={QUERY})
    embedded_records(settings, ids, PROMPT)
    s3 = aws.client(settings, "s3")
    service = SimilarityService.from_settings(settings)
    for image_id in top(service, 2 * deletions):
        s3.put_object(Bucket=settings.bucket, Key=f"uploads/{image_id}.jpg", Body=b"x")
    drain_messages(settings, settings.ingest_queue)  # their creation events: not measured
    return settings


def top(service: SimilarityService, k: int) -> list[str]:
    return [r["image_id"] for r in service.lookup(QUERY, PROMPT, k=k)["results"]]


def events_to_invisible(settings: Settings, service: SimilarityService, n: int) -> list[float]:
    pump = EventPump(settings, make_handler(Ingestor.from_settings(settings))).start(2)
    s3 = aws.client(settings, "s3")
    samples = []
    try:
        for _ in range(n):
            image_id = next(i for i in top(service, 100) if i.startswith("img"))
            start = time.perf_counter()
            s3.delete_object(Bucket=settings.bucket, Key=f"uploads/{image_id}.jpg")
            while image_id in top(service, 100):
                if time.perf_counter() - start > 60:
                    raise RuntimeError(f"{image_id} still returned after 60 s")
            samples.append(time.perf_counter() - start)
    finally:
        pump.stop()
    return samples


def delete_route(settings: Settings, service: SimilarityService, n: int) -> list[float]:
    deleter = Deleter(settings)
    samples = []
    for _ in range(n):
        image_id = top(service, 1)[0]
        start = time.perf_counter()
        deleter.delete_image(image_id)
        samples.append(time.perf_counter() - start)
        assert image_id not in top(service, 100)
    return samples


class TimedCompactor(Compactor):
    """Compaction with the time of its Embeddings repointing (one UpdateItem per row) apart."""

    repoint_seconds = 0.0

    def _repoint(self, *args: Any) -> None:
        start = time.perf_counter()
        super()._repoint(*args)
        self.repoint_seconds += time.perf_counter() - start


def compaction(settings: Settings) -> dict:
    manifest = ManifestStore(settings).get(PROMPT, MODEL)
    assert manifest is not None
    compactor = TimedCompactor(settings)
    start = time.perf_counter()
    # every shard is under max_rows: packed, without the deleted rows, into one shard
    result = compactor.compact(PROMPT, MODEL, "bench-compact", max_rows=manifest.rows + 1)
    seconds = time.perf_counter() - start
    after = ManifestStore(settings).get(PROMPT, MODEL)
    assert after is not None and not after.tombstones
    [key] = after.shards
    ids = set(ShardStore(settings).read(key, ["image_id"]).column("image_id").to_pylist())
    assert not ids & manifest.tombstones
    return {
        "rows_before": manifest.rows,
        "shards_before": len(manifest.shards),
        "tombstones": len(manifest.tombstones),
        "rows_after": result["rows"],
        "seconds": seconds,
        "repoint_seconds": compactor.repoint_seconds,
    }


def summary(samples: list[float]) -> dict:
    ordered = sorted(samples)
    return {
        "n": len(ordered),
        "p50_ms": statistics.median(ordered) * 1000,
        "max_ms": ordered[-1] * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--deletions", type=int, default=20)
    args = parser.parse_args()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    moto = MotoServer("127.0.0.1", free_port()).start(Path(mkdtemp()) / "moto.log")
    try:
        settings = world(moto, args.rows, args.dim, args.shards, args.deletions)
        service = SimilarityService.from_settings(settings)
        top(service, 10)  # warm
        events = summary(events_to_invisible(settings, service, args.deletions))
        route = summary(delete_route(settings, service, args.deletions))
        compacted = compaction(settings)
    finally:
        moto.stop()
    print(f"{args.rows} rows, dim {args.dim}, {args.shards} shards, {args.deletions} deletions")
    for name, row in (("S3 removal event -> invisible", events), ("DELETE /images path", route)):
        print(f"  {name:31} p50 {row['p50_ms']:.0f} ms, max {row['max_ms']:.0f} ms")
    print(
        f"  compaction: {compacted['rows_before']} rows in {compacted['shards_before']} shards, "
        f"{compacted['tombstones']} tombstones -> {compacted['rows_after']} rows in one shard "
        f"in {compacted['seconds']:.2f} s, of which {compacted['repoint_seconds']:.2f} s "
        "repointing the Embeddings items"
    )
    print(json.dumps({"events": events, "route": route, "compaction": compacted}))


if __name__ == "__main__":
    main()
