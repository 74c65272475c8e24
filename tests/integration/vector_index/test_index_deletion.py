"""The deletion rule on the vector index path (pgvector behind the RDS Data API emulator): from
the moment DELETE /images/{id} answers, a prompt ranked by its HNSW index shows the image on no
route, whether its row is in the index or in a shard the sync has not reached yet; and a
deletion that lands while the sync or a rebuild copies rows into the index leaves no row of
the image in the table they leave behind."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np
import pyarrow as pa
import pytest
import requests

from lambdas.api.handler import make_handler
from pipeline.deletion.deleter import Deleter
from pipeline.index_sync.sync import IndexSync
from pipeline.ingest.ingestor import Ingestor
from pipeline.local.api_gateway import LocalApi
from pipeline.lookup.similarity import SimilarityService
from pipeline.settings import Settings
from pipeline.storage.active_models import ActiveModels
from pipeline.storage.data_api import DataApi
from pipeline.storage.images_table import ImageStore
from pipeline.storage.manifests_table import ManifestStore
from pipeline.storage.shards import ShardStore
from pipeline.storage.vector_index import VectorIndex
from pipeline.upgrade.switch import switch_complete
from tests.helpers import commit_shard, commit_upgrade_rows, embedded_records

MODEL = "clip-tiny-random-init-seed0"
OTHER_MODEL = "clip-tiny-random-init-seed1"
DIM = 16


@dataclass
class World:
    settings: Settings
    prompt: str
    vectors: dict[str, np.ndarray]
    url: str

    def ids(self, image_id: str, **params: object) -> tuple[str, list[str]]:
        """The ranking that answered a's GET /similarity, and the ids it shows."""
        answer = requests.get(
            f"{self.url}/similarity",
            params={"image_id": image_id, "prompt": self.prompt, "k": 100, **params},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        return body["ranking"], [r["image_id"] for r in body["results"]]

    def posted(self, image_id: str) -> tuple[str, list[str]]:
        answer = requests.post(
            f"{self.url}/similarity",
            json={"prompt": self.prompt, "k": 100, "image_ids": [image_id]},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        [query] = answer.json()["queries"]
        return query["ranking"], [r["image_id"] for r in query["results"]]

    def table(self) -> str:
        manifest = ManifestStore(self.settings).get(self.prompt, MODEL)
        assert manifest is not None and manifest.index_table is not None
        return manifest.index_table

    def in_index(self, image_ids: list[str]) -> set[str]:
        return set(VectorIndex(DataApi(self.settings)).etags(self.table(), image_ids))

    def sync_all(self) -> None:
        sync = IndexSync(self.settings)
        for target in sync.plan(self.prompt):
            sync.run(target)


@pytest.fixture
def world(stack, rds_data) -> Iterator[World]:
    """200 vectors of one prompt in two shards, records current, threshold 100, the index
    built; the API (its candidate cache warm after the first lookup) in front."""
    settings = replace(rds_data.settings(stack.settings), vector_index_threshold=100)
    prompt = f"a grey heron {uuid.uuid4().hex[:8]}"  # the database is the session's
    rng = np.random.default_rng(11)
    vectors = {f"img{i:03d}": rng.standard_normal(DIM) for i in range(200)}
    names = sorted(vectors)
    for run, chunk in enumerate((names[:100], names[100:])):
        commit_shard(settings, prompt, MODEL, f"run-{run}", {n: vectors[n] for n in chunk})
    embedded_records(settings, names, prompt)
    api = LocalApi(
        make_handler(Ingestor.from_settings(settings), SimilarityService.from_settings(settings))
    ).start()
    try:
        built = World(settings, prompt, vectors, api.url)
        built.sync_all()
        yield built
    finally:
        api.stop()


def _newcomer(world: World, image_id: str, near: str, run: str) -> None:
    """A run's commit after the build: a pending shard, its record embedded."""
    vector = world.vectors[near] + 0.01 * np.random.default_rng(5).standard_normal(DIM)
    commit_shard(world.settings, world.prompt, MODEL, run, {image_id: vector})
    embedded_records(world.settings, [image_id], world.prompt)


def test_delete_leaves_an_hnsw_ranked_lookup_at_once_indexed_or_pending(world):
    _newcomer(world, "new001", "img007", "run-late")
    ranking, before = world.ids("img007")  # warms the API's candidate cache too
    assert ranking == "hnsw" and before[0] == "new001"
    indexed = before[1]
    assert world.in_index([indexed, "new001"]) == {indexed}  # one indexed, one pending
    for image_id in (indexed, "new001"):
        answer = requests.delete(f"{world.url}/images/{image_id}", timeout=30)
        assert answer.json() == {"image_id": image_id, "status": "deleted"}
    ranking, after = world.ids("img007")
    assert ranking == "hnsw" and indexed not in after and "new001" not in after
    assert after[:98] == [i for i in before if i not in (indexed, "new001")]
    assert after == world.ids("img007", exact="true")[1]
    assert world.posted("img007") == ("hnsw", after)
    assert world.ids("img007", dedupe="true") == ("hnsw", after)
    gone = requests.get(f"{world.url}/images/{indexed}", timeout=30)
    assert gone.status_code == 410


class _DeletingShards(ShardStore):
    """Deletes `image_id` (the whole path, as DELETE does) on its first shard read: after the
    sync or build read the manifest, before it copies the rows."""

    def __init__(self, settings: Settings, image_id: str) -> None:
        super().__init__(settings)
        self.image_id, self.done = image_id, False

    def read(self, key: str, columns: list[str] | None = None) -> pa.Table:
        if not self.done:
            self.done = True
            Deleter(self.settings).delete_image(self.image_id)
        return super().read(key, columns)


def test_a_deletion_during_a_sync_leaves_no_row_in_the_index(world):
    _newcomer(world, "new002", "img020", "run-late")
    sync = IndexSync(world.settings, shards=_DeletingShards(world.settings, "new002"))
    [target] = sync.plan(world.prompt)
    assert target.action == "sync"
    sync.run(target)
    assert "new002" not in world.in_index(["new002"])
    assert "new002" not in world.ids("img020")[1]


def test_a_deletion_during_a_rebuild_leaves_no_row_in_the_new_table(world):
    old = world.table()
    sync = IndexSync(world.settings, shards=_DeletingShards(world.settings, "img030"))
    [target] = sync.plan(world.prompt, MODEL, rebuild=True)
    assert target.action == "build"
    sync.run(target)
    assert world.table() != old
    assert "img030" not in world.in_index(["img030"])
    ranking, ids = world.ids("img031")
    assert ranking == "hnsw" and "img030" not in ids


def test_a_model_switch_after_a_deletion_keeps_the_image_out_of_the_new_models_answers(world):
    """An upgrade's rows of every image are committed, then one image is deleted, then the
    prompt switches (its new model's index built just before): neither the new model's index
    nor its exact scan shows the image."""
    commit_upgrade_rows(world.settings, world.prompt, OTHER_MODEL, sorted(world.vectors), DIM, 4)
    answer = requests.delete(f"{world.url}/images/img050", timeout=30)
    assert answer.json() == {"image_id": "img050", "status": "deleted"}
    active = ActiveModels(world.settings)
    assert active.switch(world.prompt, None, MODEL, "2026-12-01T00:00:00Z")
    plan = {"model_id": OTHER_MODEL, "prompts": {world.prompt: {"old_model": MODEL}}}
    sync = IndexSync(world.settings)
    report = switch_complete(
        ImageStore(world.settings),
        active,
        plan,
        "2026-12-02T00:00:00Z",
        lambda p, m: sync.ensure_index(p, m),
    )
    assert report[world.prompt]["active_model"] == OTHER_MODEL
    manifest = ManifestStore(world.settings).get(world.prompt, OTHER_MODEL)
    assert manifest is not None and manifest.index_table is not None
    held = VectorIndex(DataApi(world.settings)).etags(manifest.index_table, ["img050", "img051"])
    assert set(held) == {"img051"}
    for params in ({}, {"exact": "true"}):
        answer = requests.get(
            f"{world.url}/similarity",
            params={"image_id": "img051", "prompt": world.prompt, "k": 100, **params},
            timeout=30,
        )
        body = answer.json()
        assert body["model_id"] == OTHER_MODEL, body
        assert "img050" not in [r["image_id"] for r in body["results"]]
