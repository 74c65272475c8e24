"""The world of the deletion tests (tests/integration/test_delete.py and
test_deleted_stays_out.py): four uploads of one prompt, ingested through the event pump and
embedded in two shards, with the API in front of them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest
import requests

from lambdas.api.handler import make_handler as make_api_handler
from lambdas.ingest.handler import make_handler
from pipeline import aws
from pipeline.ingest.ingestor import Ingestor
from pipeline.local.api_gateway import LocalApi
from pipeline.local.event_pump import EventPump
from pipeline.local.lambda_context import LocalLambdaContext
from pipeline.settings import Settings
from pipeline.storage.embeddings_table import EmbeddingStore
from pipeline.storage.images_table import ImageStore
from pipeline.storage.manifests_table import ManifestStore
from pipeline.storage.shards import ShardStore
from tests.helpers import commit_shard, gradient_jpeg

MODEL = "clip-tiny-random-init-seed0"
PROMPT = "a red fox"
AT = "2026-11-22T00:00:00.000Z"
CTX = LocalLambdaContext("test-delete")


@dataclass
class World:
    settings: Settings
    url: str
    pump: EventPump
    etags: dict[str, str]

    def similar(self, image_id: str, **params: object) -> list[str]:
        answer = requests.get(
            f"{self.url}/similarity",
            params={"image_id": image_id, "prompt": PROMPT, "k": 100, **params},
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        return [r["image_id"] for r in answer.json()["results"]]


def upload(settings: Settings, names: list[str]) -> dict[str, str]:
    s3 = aws.client(settings, "s3")
    return {
        n: s3.put_object(
            Bucket=settings.bucket,
            Key=f"uploads/{n}.jpg",
            Body=gradient_jpeg((60 + i, 50)),
            Metadata={"prompt": PROMPT},
        )["ETag"].strip('"')
        for i, n in enumerate(names)
    }


def embed_by_hand(settings: Settings, runs: list[list[str]], etags: dict[str, str]) -> None:
    """What runs leave (a shard per run, vectors, embedded records), written directly."""
    rng = np.random.default_rng(7)
    images, vectors = ImageStore(settings), EmbeddingStore(settings)
    for n, names in enumerate(runs):
        chunk = {i: rng.standard_normal(8) for i in names}
        key = commit_shard(settings, PROMPT, MODEL, f"run-{n}", chunk, set(), etags)
        for image_id, v in chunk.items():
            unit = np.asarray(v / np.linalg.norm(v), np.float32)
            vectors.put(image_id, MODEL, unit, key, etags[image_id], "2026-11-22T00:00:00Z")
            outcome = {"status": "embedded", "embedding_model_id": MODEL}
            assert images.set_outcome(image_id, etags[image_id], outcome)


@pytest.fixture
def world(stack) -> Iterator[World]:
    """Four uploads of PROMPT, ingested through the pump and embedded in two shards."""
    settings = stack.settings
    etags = upload(settings, ["a", "b", "c", "d"])
    pump = EventPump(settings, make_handler(Ingestor.from_settings(settings)))
    pump.drain()
    embed_by_hand(settings, [["a", "b"], ["c", "d"]], etags)
    api = LocalApi(make_api_handler(Ingestor.from_settings(settings))).start()
    yield World(settings, api.url, pump, etags)
    api.stop()


def shard_ids(settings: Settings) -> set[str]:
    manifest = ManifestStore(settings).get(PROMPT, MODEL)
    assert manifest is not None
    shards = ShardStore(settings)
    return {i for k in manifest.shards for i in shards.read(k).column("image_id").to_pylist()}
