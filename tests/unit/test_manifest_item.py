"""The manifest item's layout and size: pure, no stack."""

from __future__ import annotations

import pytest

from pipeline.embedding.compaction_plan import Batch, batches, replaced, settled
from pipeline.storage.dynamodb_codec import serialize_item
from pipeline.storage.keys import MAX_SHARD_NAME_CHARS, shard_key, shard_prefix
from pipeline.storage.manifest_item import (
    ITEM_LIMIT_BYTES,
    MAX_FIXED_BYTES,
    TOMBSTONE_BYTES,
    item_bytes,
    worst_case_shards,
)
from pipeline.storage.manifests_table import Manifest, ManifestStore, to_item

MODEL, PROMPT = "color-layout-v1", "a red fox"


def test_item_bytes_follows_dynamodb_s_rules():
    # names and UTF-8 values; numbers: 1 byte per two significant digits, plus 1
    assert item_bytes({"ab": {"S": "héllo"}}) == 2 + 6
    assert item_bytes({"n": {"N": "12345"}}) == 1 + 4
    assert item_bytes({"n": {"N": "100"}}) == 1 + 2  # trailing zeroes are not significant
    # lists and maps: 3 bytes, and 1 per element (a map's element: its name too)
    assert item_bytes({"l": {"L": [{"S": "ab"}, {"N": "7"}]}}) == 1 + 3 + (1 + 2) + (1 + 2)
    assert item_bytes({"m": {"M": {"k": {"S": "v"}}}}) == 1 + 3 + 1 + 1 + 1
    assert item_bytes({"b": {"BOOL": True}, "s": {"SS": ["x", "yz"]}}) == 2 + 1 + 3
    with pytest.raises(ValueError, match="not a DynamoDB attribute value"):
        item_bytes({"x": {"Q": 1}})


def test_shards_are_stored_relative_and_read_back_whole():
    keys = tuple(shard_key(MODEL, PROMPT, f"run-{n}") for n in range(3))
    manifest = Manifest(
        PROMPT,
        MODEL,
        keys,
        {k: n + 1 for n, k in enumerate(keys)},
        version=4,
        tombstones=frozenset({"z"}),
        index_table="imgsim_vec_0123456789abcdef_1",
        pending=(keys[2], keys[0]),
        index_rows=3,
    )
    item = to_item(manifest)
    assert item["shards"]["L"][0] == {"S": "part-run-0.parquet"}
    assert item["shard_rows"] == {"L": [{"N": "1"}, {"N": "2"}, {"N": "3"}]}
    assert item["pending"] == {"L": [{"N": "2"}, {"N": "0"}]}
    assert "rows" not in item and "deleted_unlisted" not in item
    assert ManifestStore.from_item(item) == manifest


def test_items_written_with_full_keys_are_still_read():
    keys = [shard_key(MODEL, PROMPT, "run-1"), shard_key(MODEL, PROMPT, "run-2")]
    legacy = serialize_item(
        {
            "prompt": PROMPT,
            "model_id": MODEL,
            "shards": keys,
            "shard_rows": {keys[0]: 2, keys[1]: 5},
            "rows": 7,
            "version": 3,
            "tombstones": ["b"],
            "index_table": "imgsim_vec_0123456789abcdef_1",
            "pending": [keys[1]],
            "index_rows": 2,
        }
    )
    manifest = ManifestStore.from_item(legacy)
    assert manifest.shards == tuple(keys) and manifest.rows == 7
    assert manifest.pending == (keys[1],) and manifest.tombstones == frozenset({"b"})
    assert ManifestStore.from_item(to_item(manifest)) == manifest


def test_a_pending_shard_must_be_listed():
    manifest = Manifest(PROMPT, MODEL, ("a",), {"a": 1}, index_table="t", pending=("b",))
    with pytest.raises(ValueError, match="pending shards are not listed"):
        to_item(manifest)


def test_long_run_ids_keep_shard_names_bounded_and_distinct():
    long_a, long_b = "manual__" + "x" * 200 + "a", "manual__" + "x" * 200 + "b"
    a, b = shard_key(MODEL, PROMPT, long_a), shard_key(MODEL, PROMPT, long_b)
    prefix = shard_prefix(MODEL, PROMPT)
    assert a != b and len(a) - len(prefix) <= MAX_SHARD_NAME_CHARS
    assert shard_key(MODEL, PROMPT, long_a) == a  # deterministic: a retry overwrites
    with pytest.raises(ValueError, match="shard part"):
        shard_key(MODEL, PROMPT, "r", part="Compaction")


def test_tombstones_past_their_room_are_counted_not_listed():
    ids = [f"{n:032x}" for n in range(3000)]  # server-made ids: 32 characters
    manifest = Manifest(PROMPT, MODEL).with_tombstones(frozenset(ids))
    listed = len(manifest.tombstones)
    assert 1800 < listed < 2000 and manifest.deleted_unlisted == 3000 - listed
    assert item_bytes({"tombstones": to_item(manifest)["tombstones"]}) <= TOMBSTONE_BYTES
    assert manifest.compaction_due
    again = manifest.with_tombstones(frozenset(ids[:listed]))  # a replay of listed ones
    assert again == manifest


def test_the_worst_case_item_fits_dynamodb_s_limit():
    """The longest keys DynamoDB accepts, the longest shard names, every shard pending, row
    counts of ten digits, full tombstones of 128-character ids: `worst_case_shards` fit."""
    prompt = "界" * 682  # 2046 bytes: DynamoDB's partition key limit is 2048
    model = "m" * 1024  # its sort key limit
    count = worst_case_shards()
    prefix = shard_prefix(model, prompt)
    names = [f"compact-{n:0{MAX_SHARD_NAME_CHARS - 16}d}.parquet" for n in range(count)]
    assert all(len(n) == MAX_SHARD_NAME_CHARS for n in names)
    keys = tuple(prefix + n for n in names)
    manifest = Manifest(
        prompt,
        model,
        keys,
        dict.fromkeys(keys, 9_999_999_999),
        version=10**20,
        index_table="i" * 63,
        pending=keys,
        index_rows=10**20,
        deleted_unlisted=10**20,
        newest=("n" * 128, "2026-12-07T21:57:08.562Z"),
    ).with_tombstones(frozenset(f"{n:0128d}" for n in range(TOMBSTONE_BYTES // 129 + 50)))
    fixed = {k: v for k, v in to_item(manifest).items() if k not in ("tombstones",)}
    fixed.update(shards={"L": []}, shard_rows={"L": []}, pending={"L": []})
    assert item_bytes(fixed) <= MAX_FIXED_BYTES
    assert count >= 3500
    assert manifest.item_bytes <= ITEM_LIMIT_BYTES


def test_compaction_batches_hold_at_most_max_rows_and_stay_consecutive():
    keys = tuple(f"s{n}" for n in range(8))
    rows = dict(zip(keys, [3, 3, 3, 3, 50, 3, 3, 3], strict=True))
    manifest = Manifest(PROMPT, MODEL, keys, rows)
    found = batches(manifest, keys, max_rows=7)
    assert found == [
        Batch(("s0", "s1"), 6, big=False),
        Batch(("s2", "s3"), 6, big=False),
        Batch(("s5", "s6"), 6, big=False),  # s4 (big) is between: never merged across it
    ]
    # with deleted rows: the big shard that holds one is rewritten alone, a lone small one too
    holders = {"s4": frozenset({"x"}), "s7": frozenset({"y"})}
    found = batches(manifest, keys, max_rows=7, holders=holders)
    assert Batch(("s4",), 50, big=True) in found and Batch(("s7",), 3, big=False) in found


def test_replaced_keeps_the_order_and_what_is_pending():
    manifest = Manifest(
        PROMPT,
        MODEL,
        ("a", "b", "c", "d"),
        dict.fromkeys("abcd", 1),
        index_table="t",
        pending=("c", "d"),
    )
    after = replaced(manifest, ("c", "d"), (("n1", 1), ("n2", 1)))
    assert after.shards == ("a", "b", "n1", "n2") and after.pending == ("n1", "n2")
    assert replaced(after, ("c", "d"), (("n1", 1), ("n2", 1))) == after  # a retried swap


def test_settled_clears_only_what_no_listed_shard_holds():
    manifest = Manifest(
        PROMPT,
        MODEL,
        ("a", "b"),
        {"a": 1, "b": 1},
        tombstones=frozenset({"x", "y", "new"}),
        deleted_unlisted=2,
    )
    known = {"a": frozenset(), "b": frozenset({"y"})}
    after = settled(manifest, known, frozenset({"x", "y"}), unlisted=2)
    assert after.tombstones == frozenset({"y", "new"})  # y still held, "new" came later
    assert after.deleted_unlisted == 2 - 2
    # a shard listed meanwhile, not looked at: nothing cleared
    grown = Manifest(PROMPT, MODEL, ("a", "b", "c"), tombstones=frozenset({"x"}))
    assert settled(grown, known, frozenset({"x"}), unlisted=0) == grown
