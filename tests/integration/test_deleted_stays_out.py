"""Once DELETE /images/{id} has answered, or the removal event of a bucket deletion has been
processed, no route lists the image: GET and POST /similarity, `dedupe=true` pages and their
cursors, GET /prompts counts, and GET /images/{id} says it is deleted. And no later writer
brings a deleted image's row back: a version recorded while DELETE runs, the superseded-row
repair, a compaction, a near-duplicate grouping (on moto)."""

from __future__ import annotations

import numpy as np
import requests

from lambdas.ingest.handler import make_handler
from pipeline import aws
from pipeline.commit.writer import Committed
from pipeline.deletion.deleter import Deleter
from pipeline.duplicates.near import PostCommit
from pipeline.embedding.compaction import Compactor
from pipeline.embedding.superseded import SupersededRows
from pipeline.ingest.ingestor import Ingestor
from pipeline.storage.embeddings_table import EmbeddingStore
from pipeline.storage.images_table import ImageStore
from pipeline.storage.manifests_table import ManifestStore
from pipeline.storage.run_stores import RunStores
from pipeline.storage.shards import ShardStore
from tests.events import AWS_PUT, MOTO_PUT, batch, s3_put_record
from tests.helpers import commit_shard, embedded_image, gradient_jpeg
from tests.integration.deletion_world import CTX, MODEL, PROMPT, World, shard_ids, world

__all__ = ["world"]  # the fixture: four uploads of PROMPT embedded in two shards


def _lists(world: World, image_id: str) -> dict[str, object]:
    """What every listing route shows of PROMPT, from image `a`'s point of view."""
    url = world.url
    pages, cursor = [], None
    while True:  # dedupe pages of one row, through their cursors
        params = {"image_id": "a", "prompt": PROMPT, "k": 1, "dedupe": "true"}
        answer = requests.get(f"{url}/similarity", params={**params, "cursor": cursor or ""})
        assert answer.status_code == 200, answer.text
        pages += [r["image_id"] for r in answer.json()["results"]]
        cursor = answer.json()["next_cursor"]
        if not cursor:
            break
    posted = requests.post(
        f"{url}/similarity", json={"prompt": PROMPT, "k": 100, "image_ids": ["a"]}, timeout=10
    )
    assert posted.status_code == 200, posted.text
    prompts = requests.get(f"{url}/prompts", timeout=10).json()["prompts"]
    record = requests.get(f"{url}/images/{image_id}", timeout=10)
    return {
        "similar": world.similar("a"),
        "dedupe_pages": pages,
        "posted": [r["image_id"] for r in posted.json()["queries"][0]["results"]],
        "counts": [(p["prompt"], p["images"]) for p in prompts],
        "record": (record.status_code, record.json().get("error", {}).get("code")),
    }


def test_after_a_bucket_deletion_a_replayed_creation_and_delete_no_route_lists_either(world):
    """The reported sequence: b's object deleted with DeleteObject, b's original creation
    event delivered again (as moto sends it, and as S3 does, with a sequencer), then
    DELETE /images/c: every route leaves b and c out at once, and the counts drop."""
    settings = world.settings
    before = _lists(world, "c")
    assert sorted(before["similar"]) == ["b", "c", "d"]
    assert before["counts"] == [(PROMPT, 4)]

    s3 = aws.client(settings, "s3")
    s3.delete_object(Bucket=settings.bucket, Key="uploads/b.jpg")
    assert world.pump.drain() == 1
    handler = make_handler(Ingestor.from_settings(settings))
    for template in (MOTO_PUT, AWS_PUT):
        again = s3_put_record(settings.bucket, "uploads/b.jpg", world.etags["b"], 9, template)
        assert handler(batch(again), CTX) == {"batchItemFailures": []}
    after_b = _lists(world, "b")
    assert "b" not in after_b["similar"] + after_b["dedupe_pages"] + after_b["posted"]
    assert after_b["counts"] == [(PROMPT, 3)] and after_b["record"] == (410, "image_deleted")

    answer = requests.delete(f"{world.url}/images/c", timeout=10)
    assert answer.json() == {"image_id": "c", "status": "deleted"}
    after_c = _lists(world, "c")
    assert after_c["similar"] == ["d"] and after_c["posted"] == ["d"]
    assert after_c["dedupe_pages"] == ["d"]
    assert after_c["counts"] == [(PROMPT, 2)] and after_c["record"] == (410, "image_deleted")
    assert world.pump.drain() == 1  # the route's own removal event: the work is done
    assert _lists(world, "c") == after_c


class _NewVersionBeforeMarking(ImageStore):
    """A version of `a` put and recorded between DELETE's read and its marking (once)."""

    def __init__(self, world: World) -> None:
        super().__init__(world.settings)
        self.world, self.done = world, False

    def mark_deleted(self, image_id: str, etag, prompt, at, sequencer) -> bool:
        if not self.done:
            self.done = True
            settings = self.world.settings
            aws.client(settings, "s3").put_object(
                Bucket=settings.bucket,
                Key="uploads/a.jpg",
                Body=gradient_jpeg((99, 40)),
                Metadata={"prompt": PROMPT},
            )
            self.world.pump.drain()
        return super().mark_deleted(image_id, etag, prompt, at, sequencer)


def test_a_version_recorded_while_delete_runs_goes_too_object_first(world):
    """Else its object stays in the bucket under a deletion marker, and a redelivered creation
    event of it (at least once) records the image again."""
    settings = world.settings
    deleter = Deleter(settings, images=_NewVersionBeforeMarking(world))
    assert deleter.delete_image("a") == {"image_id": "a", "status": "deleted"}
    s3 = aws.client(settings, "s3")
    assert s3.list_objects_v2(Bucket=settings.bucket, Prefix="uploads/a.jpg")["KeyCount"] == 0
    marker = ImageStore(settings).get("a")
    assert marker["status"] == "deleted"
    world.pump.drain()
    new_etag = marker["etag"]
    redelivered = s3_put_record(settings.bucket, "uploads/a.jpg", new_etag, 9, MOTO_PUT)
    handler = make_handler(Ingestor.from_settings(settings))
    assert handler(batch(redelivered), CTX) == {"batchItemFailures": []}
    assert ImageStore(settings).get("a") == marker


def test_the_superseded_row_repair_gives_a_deleted_image_its_tombstone_back(stack):
    """The repair lists the current version's row again (its id leaves the tombstones); an image
    deleted while it does so is tombstoned again, so compaction drops its rows."""
    settings = stack.settings
    rng = np.random.default_rng(3)
    images = ImageStore(settings)
    for i in ("x", "y"):
        images.put_version(embedded_image(i, PROMPT))
    commit_shard(settings, PROMPT, MODEL, "run-1", {i: rng.standard_normal(8) for i in "xy"})
    for i in ("x", "y"):
        outcome = {"status": "embedded", "embedding_model_id": MODEL}
        assert images.set_outcome(i, "etag-" + i, outcome)
    deleter = Deleter(settings)

    class DeleteWhileListing(ShardStore):
        def write(self, key, table):
            deleter.purge(images.get("x"), None)  # the deletion lands before the listing
            return super().write(key, table)

    stores = RunStores(
        images, EmbeddingStore(settings), ManifestStore(settings), DeleteWhileListing(settings)
    )
    stale = Committed("x", "etag-stale", PROMPT)  # a late run's row of an older version
    assert SupersededRows(stores).restore([stale], MODEL, "run-late")["relisted"] == 1
    manifest = ManifestStore(settings).get(PROMPT, MODEL)
    assert "x" in manifest.tombstones
    Compactor(settings).compact(PROMPT, MODEL, "compact-1", max_rows=100)
    assert shard_ids(settings) == {"y"}


def test_a_deletion_during_compaction_stays_tombstoned_and_the_next_drops_it(world):
    settings = world.settings
    compactor = Compactor(settings)
    merged_write = compactor.shards.write

    def write_then_delete(key, table):
        merged_write(key, table)
        Deleter(settings).delete_image("c")  # after the compaction read the manifest

    compactor.shards.write = write_then_delete  # type: ignore[method-assign]
    Deleter(settings).delete_image("b")
    compactor.compact(PROMPT, MODEL, "compact-1", max_rows=100)
    manifest = ManifestStore(settings).get(PROMPT, MODEL)
    assert manifest.tombstones == frozenset({"c"}) and manifest.live_rows == 2
    assert sorted(world.similar("a")) == ["d"]
    Compactor(settings).compact(PROMPT, MODEL, "compact-2", max_rows=100)
    assert shard_ids(settings) == {"a", "d"}
    assert ManifestStore(settings).get(PROMPT, MODEL).tombstones == frozenset()


def test_near_duplicate_grouping_never_roots_a_group_at_a_deleted_image(world):
    """A run commits an image with b's very vector after b was deleted (b's row is still in
    a shard, tombstoned): the new image is not grouped under b, and dedupe pages show it."""
    settings = world.settings
    b_vector = np.asarray(EmbeddingStore(settings).get("b")["embedding"], np.float32)
    Deleter(settings).delete_image("b")
    images = ImageStore(settings)
    images.put_version(embedded_image("e", PROMPT))
    commit_shard(settings, PROMPT, MODEL, "run-e", {"e": b_vector})
    assert images.set_outcome("e", "etag-e", {"status": "embedded", "embedding_model_id": MODEL})
    post_commit = PostCommit(settings, images, ManifestStore(settings), ShardStore(settings))
    assert post_commit.after_commit(MODEL, [Committed("e", "etag-e", PROMPT)], []) == {
        "deleted_during_run": 0,
        "near_duplicates": 0,
    }
    assert "near_duplicate_of" not in images.get("e")
    assert sorted(_lists(world, "b")["dedupe_pages"]) == ["c", "d", "e"]


def test_deletions_past_the_tombstones_room_are_dropped_by_their_records(world, monkeypatch):
    """A manifest whose tombstones are full still takes every deletion (counted, not listed):
    the lookups hide the image by its record, GET /prompts counts it out, and compaction finds
    its row through the Images records and drops it."""
    settings = world.settings
    monkeypatch.setattr("pipeline.storage.manifests_table.TOMBSTONE_BYTES", 0)  # no room
    assert requests.delete(f"{world.url}/images/b", timeout=10).status_code == 200
    manifest = ManifestStore(settings).get(PROMPT, MODEL)
    assert manifest.tombstones == frozenset() and manifest.deleted_unlisted == 1
    assert manifest.live_rows == 3 and manifest.compaction_due
    assert sorted(world.similar("a")) == ["c", "d"]
    compactor = Compactor(settings)
    assert compactor.candidates(max_rows=100, due_only=True) == [
        {"prompt": PROMPT, "model_id": MODEL}
    ]
    compactor.compact(PROMPT, MODEL, "compact-1", max_rows=100)
    assert shard_ids(settings) == {"a", "c", "d"}
    manifest = ManifestStore(settings).get(PROMPT, MODEL)
    assert manifest.deleted_unlisted == 0 and manifest.live_rows == 3
    assert compactor.candidates(max_rows=100) == []
