"""Lookups of a prompt over the threshold, answered by pgvector (the local PostgreSQL behind the
RDS Data API emulator) through the API adapter, against `exact=true` on the same data; the
sync that keeps the index derived from the shards; every lookup rule on that path."""

from __future__ import annotations

import uuid
from dataclasses import replace

import numpy as np
import pytest
import requests

from lambdas.api.handler import make_handler
from pipeline.commit.writer import Committed
from pipeline.deletion.deleter import Deleter
from pipeline.duplicates.near import PostCommit
from pipeline.embedding.compaction import Compactor
from pipeline.index_sync.sync import IndexSync
from pipeline.ingest.ingestor import Ingestor
from pipeline.local.api_gateway import LocalApi
from pipeline.lookup.similarity import SimilarityService
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


class World:
    def __init__(self, settings, prompt, vectors, api):
        self.settings, self.prompt, self.vectors, self.api = settings, prompt, vectors, api
        self.sync = IndexSync(settings)
        self.manifests = ManifestStore(settings)

    def get(self, **params):
        response = requests.get(
            f"{self.api.url}/similarity", params={"prompt": self.prompt, **params}, timeout=30
        )
        assert response.status_code == 200, response.text
        return response.json()

    def both(self, **params):
        """The default answer and the exact scan's, each as (ids, scores)."""
        fast, exact = self.get(**params), self.get(exact="true", **params)
        return fast, exact

    def manifest(self, model_id=MODEL):
        return self.manifests.get(self.prompt, model_id)

    def sync_all(self):
        return [self.sync.run(t) for t in self.sync.plan(self.prompt)]


def _set(settings, image_id, name, value):
    images = ImageStore(settings)
    images.client.update_item(
        TableName=images.table,
        Key={"image_id": {"S": image_id}},
        UpdateExpression="SET #n = :v",
        ExpressionAttributeNames={"#n": name},
        ExpressionAttributeValues={":v": {"S": value}},
    )


def _ids(page):
    return [r["image_id"] for r in page["results"]]


@pytest.fixture
def world(stack, rds_data):
    """300 vectors of one prompt in three shards, records current, threshold 100: the sync
    builds the prompt's index."""
    settings = replace(rds_data.settings(stack.settings), vector_index_threshold=100)
    prompt = f"a red fox {uuid.uuid4().hex[:8]}"  # the database is the session's: own tables
    rng = np.random.default_rng(7)
    vectors = {f"img{i:03d}": rng.standard_normal(DIM) for i in range(300)}
    names = sorted(vectors)
    for run, chunk in enumerate((names[:100], names[100:200], names[200:])):
        commit_shard(settings, prompt, MODEL, f"run-{run}", {n: vectors[n] for n in chunk})
    embedded_records(settings, names, prompt)
    service = SimilarityService.from_settings(settings)
    api = LocalApi(make_handler(Ingestor.from_settings(settings), similarity=service)).start()
    try:
        yield World(settings, prompt, vectors, api)
    finally:
        api.stop()


def test_below_the_threshold_or_before_a_build_the_exact_scan_answers(world):
    assert world.get(image_id="img000")["ranking"] == "exact"
    assert world.sync.plan(world.prompt)[0].action == "build"
    higher = IndexSync(replace(world.settings, vector_index_threshold=301))
    assert higher.plan(world.prompt) == []  # 300 live rows


def test_a_prompt_over_the_threshold_is_ranked_by_hnsw_as_the_exact_scan_ranks_it(world):
    [result] = world.sync_all()
    manifest = world.manifest()
    assert result.action == "build" and result.index_rows == 300
    assert manifest.index_table == result.table and manifest.pending == ()
    for query in ("img000", "img123", "img299"):
        fast, exact = world.both(image_id=query, k=20)
        assert (fast["ranking"], exact["ranking"]) == ("hnsw", "exact")
        assert _ids(fast) == _ids(exact)
        assert np.allclose(
            [r["similarity"] for r in fast["results"]],
            [r["similarity"] for r in exact["results"]],
            atol=1e-5,
        )
        assert query not in _ids(fast)
        assert all(r["url"].startswith("http") for r in fast["results"])


def test_cursors_page_the_hnsw_answer_without_gaps_or_repeats(world):
    world.sync_all()
    pages, cursor = [], None
    for _ in range(6):
        page = world.get(image_id="img042", k=7, **({"cursor": cursor} if cursor else {}))
        assert page["ranking"] == "hnsw"
        pages += _ids(page)
        cursor = page["next_cursor"]
    assert len(pages) == len(set(pages)) == 42
    assert pages == _ids(world.get(image_id="img042", k=42, exact="true"))
    scores = world.get(image_id="img042", k=42)["results"]
    assert [r["similarity"] for r in scores] == sorted(
        (r["similarity"] for r in scores), reverse=True
    )


def test_min_score_and_dedupe_hold_on_the_index(world):
    world.sync_all()
    fast, exact = world.both(image_id="img010", k=100, min_score="0.3")
    assert _ids(fast) == _ids(exact) and all(r["similarity"] >= 0.3 for r in fast["results"])
    best = _ids(world.get(image_id="img010", k=3))
    _set(world.settings, best[1], "near_duplicate_of", best[0])  # best[1] copies best[0]
    fast, exact = world.both(image_id="img010", k=10, dedupe="true")
    assert _ids(fast) == _ids(exact) and best[1] not in _ids(fast) and best[0] in _ids(fast)


def test_a_commit_after_the_build_is_found_before_the_sync_then_synced(world):
    world.sync_all()
    query = world.vectors["img050"]
    newcomer = query + 0.01 * np.random.default_rng(1).standard_normal(DIM)
    commit_shard(world.settings, world.prompt, MODEL, "run-late", {"new001": newcomer})
    embedded_records(world.settings, ["new001"], world.prompt)
    assert len(world.manifest().pending) == 1
    fast, exact = world.both(image_id="img050", k=5)
    assert fast["ranking"] == "hnsw" and _ids(fast)[0] == "new001" and _ids(fast) == _ids(exact)
    [result] = world.sync_all()
    assert (result.action, result.rows_sent, result.index_rows) == ("sync", 1, 301)
    assert world.manifest().pending == ()
    assert _ids(world.get(image_id="img050", k=5)) == _ids(exact)
    again = world.sync.sync(world.prompt, MODEL)  # nothing pending: changes nothing
    assert (again.rows_sent, again.index_rows) == (0, 301)


def test_a_deleted_image_and_an_older_object_version_never_show(world):
    world.sync_all()
    top = _ids(world.get(image_id="img007", k=3))
    Deleter(world.settings).delete_image(top[0])
    _set(world.settings, top[1], "etag", "etag-newer")  # the object replaced: a new version
    fast, exact = world.both(image_id="img007", k=10)
    assert fast["ranking"] == "hnsw" and _ids(fast) == _ids(exact)
    assert top[0] not in _ids(fast) and top[1] not in _ids(fast) and top[2] in _ids(fast)
    [result] = world.sync_all()  # the tombstone reaches the table
    assert result.deleted == 1 and result.index_rows == 299
    index = VectorIndex(DataApi(world.settings))
    assert top[0] not in index.etags(result.table, [top[0], top[2]])


def test_compaction_keeps_what_the_index_holds_apart_from_what_is_pending(world):
    world.sync_all()
    commit_shard(world.settings, world.prompt, MODEL, "run-late", {"new001": np.ones(DIM)})
    near = np.ones(DIM) + 0.01 * np.arange(DIM)
    commit_shard(world.settings, world.prompt, MODEL, "run-later", {"new002": near})
    embedded_records(world.settings, ["new001", "new002"], world.prompt)
    compactor = Compactor(world.settings)
    compactor.compact(world.prompt, MODEL, "compact-1", max_rows=1000)  # the indexed three
    manifest = world.manifest()
    assert len(manifest.shards) == 3 and len(manifest.pending) == 2
    compactor.compact(world.prompt, MODEL, "compact-2", max_rows=1000)  # then the pending two
    manifest = world.manifest()
    assert len(manifest.shards) == 2 and len(manifest.pending) == 1
    assert manifest.shard_rows[manifest.pending[0]] == 2
    for query, other in (("new001", "new002"), ("new002", "new001"), ("img001", None)):
        fast, exact = world.both(image_id=query, k=100)
        assert fast["ranking"] == "hnsw" and _ids(fast) == _ids(exact)
        assert other is None or _ids(fast)[0] == other
    [result] = world.sync_all()
    assert result.rows_sent == 2 and world.manifest().pending == ()


def test_a_rebuild_switches_to_a_new_table_and_drops_the_old(world):
    [first] = world.sync_all()
    [again] = [world.sync.run(t) for t in world.sync.plan(world.prompt, rebuild=True)]
    assert again.action == "build" and again.table != first.table
    assert world.manifest().index_table == again.table
    index = VectorIndex(DataApi(world.settings))
    assert first.table not in index.tables() and again.table in index.tables()
    assert world.get(image_id="img000")["ranking"] == "hnsw"


def test_another_model_gets_its_own_index_beside_the_first(world):
    [first] = world.sync_all()
    rng = np.random.default_rng(3)
    others = {n: rng.standard_normal(DIM) for n in sorted(world.vectors)[:150]}
    commit_shard(world.settings, world.prompt, OTHER_MODEL, "upgrade-0", others)
    commit_shard(
        world.settings,
        world.prompt,
        OTHER_MODEL,
        "upgrade-1",
        {n: rng.standard_normal(DIM) for n in sorted(world.vectors)[150:]},
    )
    [second] = world.sync_all()
    assert second.model_id == OTHER_MODEL and second.table != first.table
    assert world.manifest(MODEL).index_table == first.table
    assert world.manifest(OTHER_MODEL).index_table == second.table


def test_the_index_off_keeps_the_exact_scan_everywhere(world):
    world.sync_all()
    off = replace(world.settings, vector_index="off")
    service = SimilarityService.from_settings(off)
    page = service.lookup("img000", world.prompt, 10)
    assert page["ranking"] == "exact" and not off.vector_index_enabled
    assert IndexSync(world.settings).plan(world.prompt) == []  # built: nothing to do


def test_post_similarity_says_which_ranking_answered(world):
    world.sync_all()
    body = {"prompt": world.prompt, "k": 5, "image_ids": ["img003"]}
    fast = requests.post(f"{world.api.url}/similarity", json=body, timeout=30).json()
    exact = requests.post(
        f"{world.api.url}/similarity", json={**body, "exact": True}, timeout=30
    ).json()
    assert fast["queries"][0]["ranking"] == "hnsw" and exact["queries"][0]["ranking"] == "exact"
    assert _ids(fast["queries"][0]) == _ids(exact["queries"][0])


def test_near_duplicates_of_a_large_prompt_are_found_through_its_index(world):
    """The commit's near-duplicate check asks the index, not every shard, and finds what the
    whole read finds: a copy of an indexed image, and a copy of an image in a pending shard."""
    world.sync_all()
    rng = np.random.default_rng(5)
    copies = {
        "zcopy-indexed": world.vectors["img005"] + 0.001 * rng.standard_normal(DIM),
        "zzfirst": rng.standard_normal(DIM) * 5,
    }
    copies["zzfirst-copy"] = copies["zzfirst"] + 0.001 * rng.standard_normal(DIM)
    commit_shard(world.settings, world.prompt, MODEL, "run-copies", copies)
    embedded_records(world.settings, list(copies), world.prompt)
    new = [Committed(i, "etag-" + i, world.prompt) for i in copies]
    stores = (ImageStore(world.settings), world.manifests, ShardStore(world.settings))
    index = VectorIndex(DataApi(world.settings))
    with_index = PostCommit(world.settings, *stores, index)
    assert with_index.mark(world.prompt, MODEL, new) == 2
    records = ImageStore(world.settings).batch_get(list(copies), ["near_duplicate_of"])
    assert records["zcopy-indexed"].get("near_duplicate_of") == "img005"
    assert records["zzfirst-copy"].get("near_duplicate_of") == "zzfirst"
    assert "near_duplicate_of" not in records["zzfirst"]


def test_exact_on_a_prompt_too_large_to_scan_in_memory_is_a_clear_400(world):
    world.sync_all()
    small = replace(world.settings, exact_scan_max_rows=299)
    api = LocalApi(
        make_handler(
            Ingestor.from_settings(small), similarity=SimilarityService.from_settings(small)
        )
    ).start()
    try:
        params = {"image_id": "img000", "prompt": world.prompt}
        refused = requests.get(
            f"{api.url}/similarity", params={**params, "exact": "true"}, timeout=30
        )
        assert refused.status_code == 400
        assert refused.json()["error"]["code"] == "exact_scan_too_large"
        assert "IMGSIM_EXACT_SCAN_MAX_ROWS" in refused.json()["error"]["message"]
        answered = requests.get(f"{api.url}/similarity", params=params, timeout=30)
        assert answered.status_code == 200 and answered.json()["ranking"] == "hnsw"
    finally:
        api.stop()


def test_the_tables_of_a_retired_model_and_of_an_old_generation_are_dropped(world):
    [first] = world.sync_all()
    index = VectorIndex(DataApi(world.settings))
    stale = first.table.rsplit("_", 1)[0] + "_0"  # an older generation, as a crash leaves it
    index.create_table(stale, DIM)
    assert stale in index.tables()
    assert set(world.sync.drop_orphans()) >= {stale} and first.table in index.tables()
    world.manifests.client.delete_item(  # what `imgsim model retire` does to the manifest
        TableName=world.manifests.table,
        Key={"prompt": {"S": world.prompt}, "model_id": {"S": MODEL}},
    )
    assert first.table in world.sync.drop_orphans() and first.table not in index.tables()


def test_a_model_upgrade_switches_a_large_prompt_once_its_new_index_is_built(world):
    world.sync_all()
    commit_upgrade_rows(world.settings, world.prompt, OTHER_MODEL, sorted(world.vectors), DIM, 4)
    active = ActiveModels(world.settings, world.manifests.client)
    assert active.switch(world.prompt, None, MODEL, "2026-12-01T00:00:00Z")
    plan = {"model_id": OTHER_MODEL, "prompts": {world.prompt: {"old_model": MODEL}}}
    built = []

    def before_switch(prompt, model_id):
        assert active.get(prompt) == MODEL  # the old model answers while the index builds
        built.append(world.sync.ensure_index(prompt, model_id))

    report = switch_complete(
        ImageStore(world.settings), active, plan, "2026-12-02T00:00:00Z", before_switch
    )
    assert report[world.prompt]["active_model"] == OTHER_MODEL
    assert built[0].action == "build" and built[0].index_rows == 300
    assert world.manifest(OTHER_MODEL).index_table == built[0].table
    page = world.get(image_id="img000")
    assert (page["model_id"], page["ranking"]) == (OTHER_MODEL, "hnsw")
    assert world.sync.ensure_index(world.prompt, OTHER_MODEL) is None  # built: nothing to do


def test_compaction_removes_a_deleted_images_index_row_before_it_clears_the_tombstone(world):
    [built] = world.sync_all()
    Deleter(world.settings).delete_image("img042")
    assert "img042" in world.manifest().tombstones
    Compactor(world.settings).compact_all(world.prompt, MODEL, "compact-del", max_rows=1000)
    assert "img042" not in world.manifest().tombstones  # cleared: no listed shard holds it
    index = VectorIndex(DataApi(world.settings))
    assert "img042" not in index.etags(built.table, ["img042"])
    assert "img042" not in _ids(world.get(image_id="img041", k=100))
