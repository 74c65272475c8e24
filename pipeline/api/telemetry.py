"""The API Lambda's structured logger and its CloudWatch metrics (powertools Metrics, embedded
metric format: one JSON line per invocation on stdout, which CloudWatch turns into metrics
without an API call)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from pipeline.lookup.candidates import CandidateCache

logger = Logger(service="imgsim-api")
metrics = Metrics(namespace="imgsim", service="imgsim-api")


@contextmanager
def lookup_metrics(cache: CandidateCache) -> Iterator[None]:
    """LookupLatency (ms) of a successful lookup, with the candidate-cache hits and shard reads
    it caused: a warm container answers from memory (hits 1, reads 0); a cold one or a new
    manifest version reads shards."""
    hits, reads = cache.hits, cache.shard_reads
    started = time.perf_counter()
    yield
    elapsed_ms = (time.perf_counter() - started) * 1000
    metrics.add_metric(name="LookupLatency", unit=MetricUnit.Milliseconds, value=elapsed_ms)
    metrics.add_metric(name="CandidateCacheHits", unit=MetricUnit.Count, value=cache.hits - hits)
    metrics.add_metric(name="ShardReads", unit=MetricUnit.Count, value=cache.shard_reads - reads)
