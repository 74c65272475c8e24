"""The one helper that keeps Pending_GSI's key in step with `status` (pure)."""

from __future__ import annotations

from pipeline.storage.images_table import (
    PENDING_SHARD,
    pending_key,
    pending_shard,
    with_pending_key,
)


def test_a_write_to_pending_sets_the_shard_key_beside_its_own_clauses():
    key = pending_key("img1", "pending")
    assert key.update(["#s = :pending"], ["#e"]) == (
        f"SET #s = :pending, {PENDING_SHARD} = :{PENDING_SHARD} REMOVE #e"
    )
    assert key.values == {f":{PENDING_SHARD}": pending_shard("img1")}


def test_a_write_to_any_other_status_removes_it():
    for status in ("embedded", "failed", "deleted", None):
        key = pending_key("img1", status)
        assert key.update(["#s = :new"]) == f"SET #s = :new REMOVE {PENDING_SHARD}"
        assert key.update([], ["#e"]) == f"REMOVE #e, {PENDING_SHARD}"
        assert key.values == {}


def test_a_whole_item_carries_the_key_only_while_pending():
    pending = with_pending_key({"image_id": "img1", "status": "pending"})
    assert pending[PENDING_SHARD] == pending_shard("img1")
    stale = {"image_id": "img1", "status": "embedded", PENDING_SHARD: "03"}
    assert with_pending_key(stale) == {"image_id": "img1", "status": "embedded"}
