"""Duplicates on moto and the SageMaker emulator: byte-identical copies take the first copy's
vector (Sha256_GSI), re-encoded and resized copies are recorded near-duplicates when their
embedding is committed, and GET /similarity?dedupe=true keeps one image per group.

The model is color-layout-v1, the offline colour descriptor: a re-encoded or resized
copy of a photo scores about 0.999 with it, another photo at most about 0.64."""

from __future__ import annotations

import base64
import io
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

from lambdas.api.handler import make_handler as make_api_handler
from lambdas.ingest.handler import make_handler
from pipeline import aws
from pipeline.ingest.ingestor import Ingestor
from pipeline.local.api_gateway import LocalApi
from pipeline.local.event_pump import EventPump
from pipeline.settings import Settings
from pipeline.storage.active_models import ActiveModels
from pipeline.storage.embeddings_table import EmbeddingStore
from pipeline.storage.images_table import ImageStore
from pipeline.storage.manifests_table import ManifestStore
from sagemaker_jobs.build_model import build
from tests.helpers import drain_messages, run_embedding

SAMPLES = Path(__file__).parents[2] / "samples"
MODEL = "color-layout-v1"
MODEL_KEY = "models/color-layout-v1/model.tar.gz"


@pytest.fixture(scope="module")
def color_layout_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("models") / "color-layout-v1.tar.gz"
    build(path, family="color-layout-v1")
    return path


@dataclass
class World:
    settings: Settings
    url: str
    pump: EventPump
    model_uri: str
    sagemaker: str

    def upload(self, name: str, data: bytes, prompt: str, ext: str = "jpg") -> None:
        aws.client(self.settings, "s3").put_object(
            Bucket=self.settings.bucket,
            Key=f"uploads/{name}.{ext}",
            Body=data,
            Metadata={"prompt": prompt},
        )
        self.pump.drain()

    def embed(self) -> dict:
        run_id = f"run-{uuid.uuid4().hex[:8]}"
        return run_embedding(self.settings, self.sagemaker, self.model_uri, run_id)

    def similar(self, image_id: str, prompt: str, **params: object) -> list[str]:
        answer = requests.get(
            f"{self.url}/similarity",
            params={"image_id": image_id, "prompt": prompt, **params},
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        return [r["image_id"] for r in answer.json()["results"]]

    def image(self, image_id: str) -> dict:
        return requests.get(f"{self.url}/images/{image_id}", timeout=10).json()


@pytest.fixture
def world(stack, sagemaker_emulator, color_layout_artifact) -> Iterator[World]:
    settings = stack.settings
    aws.client(settings, "s3").upload_file(str(color_layout_artifact), settings.bucket, MODEL_KEY)
    pump = EventPump(settings, make_handler(Ingestor.from_settings(settings)))
    api = LocalApi(make_api_handler(Ingestor.from_settings(settings))).start()
    model_uri = f"s3://{settings.bucket}/{MODEL_KEY}"
    yield World(settings, api.url, pump, model_uri, sagemaker_emulator)
    api.stop()


def _photo(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def _reencoded(name: str, scale: float = 1.0, quality: int = 40) -> bytes:
    image = Image.open(SAMPLES / name).convert("RGB")
    if scale != 1.0:
        image = image.resize((round(image.width * scale), round(image.height * scale)))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def test_byte_identical_copies_take_the_first_copys_vector(world):
    settings = world.settings
    images, vectors = ImageStore(settings), EmbeddingStore(settings)
    cat = _photo("chelsea.jpg")
    world.upload("cat1", cat, "a cat")
    world.upload("early", cat, "a cat")  # a copy of an image not embedded yet: embedded too
    assert images.get("early")["duplicate_of"] == "cat1"
    assert world.embed()["embedded"] == 2
    drain_messages(settings, settings.embed_queue)

    world.upload("cat2", cat, "a cat")
    world.upload("cat3", cat, "kitten")
    posted = requests.post(
        f"{world.url}/images",
        json={"image_data": base64.b64encode(cat).decode(), "prompt": "kitten"},
        timeout=10,
    ).json()["image_id"]
    original = vectors.get("cat1")
    for copy in ("cat2", "cat3", posted):
        record = images.get(copy)
        assert record["duplicate_of"] == "cat1" and record["status"] == "embedded"
        assert record["embedding_model_id"] == MODEL
        assert np.array_equal(vectors.get(copy)["embedding"], original["embedding"])
        assert world.image(copy)["duplicate_of"] == "cat1"
    assert drain_messages(settings, settings.embed_queue) == []  # none was embedded again
    assert world.similar("cat1", "a cat") == ["cat2", "early"]  # ties: by image id
    assert sorted(world.similar("cat2", "kitten")) == sorted(["cat3", posted])
    assert world.similar("cat1", "a cat", dedupe="true") == []  # copies of the query itself
    assert "duplicate_of" not in world.image("cat1")

    # a prompt a model upgrade switched to another model: a copy there takes the original's
    # vector of that model too (and notes it), or its prompt's lookups would never rank it
    etag = images.get("cat1")["etag"]
    upgraded = np.linspace(-1, 1, 12).astype(np.float32)
    vectors.put_model_vector("cat1", "other-v2", upgraded, etag, "2026-11-22T00:00:00.000Z")
    assert images.add_embedded_models("cat1", etag, {MODEL, "other-v2"})
    assert ActiveModels(settings).pin("an upgraded cat", "other-v2", "2026-11-22T00:00:00.000Z")
    world.upload("cat4", cat, "an upgraded cat")
    record = images.get("cat4")
    assert record["status"] == "embedded" and record["embedding_model_id"] == MODEL
    assert set(record["embedded_models"]) == {MODEL, "other-v2"}
    assert np.array_equal(vectors.get_for_model("cat4", "other-v2")["embedding"], upgraded)
    assert np.array_equal(vectors.get("cat4")["embedding"], original["embedding"])
    for model_id in (MODEL, "other-v2"):
        assert ManifestStore(settings).get("an upgraded cat", model_id).rows == 1


def test_near_duplicates_are_recorded_at_commit_and_dedupe_keeps_one_per_group(world):
    settings = world.settings
    images = ImageStore(settings)
    prompt = "a cat photo"
    world.upload("orig", _photo("chelsea.jpg"), prompt)  # the earliest of its group
    world.upload("reenc", _reencoded("chelsea.jpg", quality=40), prompt)
    world.upload("small", _reencoded("chelsea.jpg", scale=0.5), prompt)
    for name in ("coffee", "rocket"):
        world.upload(name, _photo(f"{name}.jpg"), prompt)
    world.upload("astronaut", _photo("astronaut.png"), prompt, ext="png")
    summary = world.embed()
    assert (summary["embedded"], summary["near_duplicates"]) == (6, 2)

    for copy in ("reenc", "small"):
        assert images.get(copy)["near_duplicate_of"] == "orig"
        assert world.image(copy)["near_duplicate_of"] == "orig"
        assert "duplicate_of" not in images.get(copy)  # other bytes
    for other in ("orig", "coffee", "rocket", "astronaut"):
        assert "near_duplicate_of" not in images.get(other)

    everything = world.similar("coffee", prompt)
    assert sorted(everything) == ["astronaut", "orig", "reenc", "rocket", "small"]
    deduped = world.similar("coffee", prompt, dedupe="true")
    assert deduped == [i for i in everything if i in {"orig", "rocket", "astronaut"}]
    assert sorted(world.similar("reenc", prompt, dedupe="true")) == [
        "astronaut",
        "coffee",
        "rocket",
    ]
    assert _paged(world, "coffee", prompt) == deduped

    assert requests.delete(f"{world.url}/images/orig", timeout=10).status_code == 200
    after = world.similar("coffee", prompt, dedupe="true")
    best_copy = next(i for i in everything if i in {"reenc", "small"})
    assert after == [i for i in everything if i in {best_copy, "rocket", "astronaut"}]
    # page by page too: the group shown through its best copy is carried in the cursor, so
    # the other copy never shows on a later page
    assert _paged(world, "coffee", prompt) == after


def _paged(world: World, image_id: str, prompt: str) -> list[str]:
    """Every result of a deduplicated query, one per page, following next_cursor."""
    found: list[str] = []
    params: dict[str, object] = {"image_id": image_id, "prompt": prompt, "k": 1, "dedupe": "true"}
    while True:
        page = requests.get(f"{world.url}/similarity", params=params, timeout=10).json()
        found += [r["image_id"] for r in page["results"]]
        if not page["next_cursor"]:
            return found
        params["cursor"] = page["next_cursor"]
