"""Compaction on moto: same rows, fewer files, each image exactly once, safe to repeat."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from pipeline import aws
from pipeline.embedding.compaction import Compactor
from pipeline.storage.embeddings_table import EmbeddingStore
from pipeline.storage.keys import shard_key
from pipeline.storage.manifests_table import ManifestStore
from pipeline.storage.shards import ShardRow, ShardStore, merge_tables, rows_table

MODEL = "color-layout-v1"
PROMPT = "a red fox"
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def _vec(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(8).astype(np.float32)
    return v / np.linalg.norm(v)


def _commit_run(settings, run_id: str, rows: dict[str, int], prompt: str = PROMPT) -> str:
    """What an embedding run leaves: a shard, its manifest entry, the Embeddings items."""
    key = shard_key(MODEL, prompt, run_id)
    table = rows_table(
        [ShardRow(i, _vec(s), T0, f"uploads/{i}.jpg", "etag") for i, s in rows.items()],
        8,
        MODEL,
        prompt,
    )
    ShardStore(settings).write(key, table)
    ManifestStore(settings).update(prompt, MODEL, lambda m: m.with_shard(key, table.num_rows, rows))
    for image_id, seed in rows.items():
        EmbeddingStore(settings).put(image_id, MODEL, _vec(seed), key, "etag", "t")
    return key


def test_a_shard_written_before_rows_carried_an_etag_still_merges_and_reads(stack):
    """Older shards have no `source_etag` column: merged with newer ones it is null there,
    and a read that asks for it gets the columns the file has."""
    new = rows_table([ShardRow("x", _vec(1), T0, "k", "e1")], 8, MODEL, PROMPT)
    old = rows_table([ShardRow("y", _vec(2), T0, "k", "e2")], 8, MODEL, PROMPT)
    old = old.drop_columns(["source_etag"])
    merged = merge_tables([old, new])
    assert merged.column("source_etag").to_pylist() == ["e1", None]  # x, y
    shards = ShardStore(stack.settings)
    shards.write("shards/legacy.parquet", old)
    read = shards.read("shards/legacy.parquet", ["image_id", "source_etag"])
    assert read.column_names == ["image_id"]


def test_merge_tables_keeps_the_last_row_per_image():
    a = rows_table(
        [ShardRow("x", _vec(1), T0, "k", "e"), ShardRow("y", _vec(2), T0, "k", "e")],
        8,
        MODEL,
        PROMPT,
    )
    b = rows_table(
        [ShardRow("x", _vec(3), T0, "k", "e"), ShardRow("w", _vec(4), T0, "k", "e")],
        8,
        MODEL,
        PROMPT,
    )
    merged = merge_tables([a, b])
    assert merged.column("image_id").to_pylist() == ["w", "x", "y"]
    np.testing.assert_allclose(merged.column("embedding").to_pylist()[1], _vec(3))
    assert merged.schema.metadata[b"model_id"] == MODEL.encode()


def test_compaction_merges_swaps_repoints_and_deletes(stack):
    settings = stack.settings
    k1 = _commit_run(settings, "run-1", {"a": 1, "x": 2})
    k2 = _commit_run(settings, "run-2", {"b": 3})
    k3 = _commit_run(settings, "run-3", {"x": 4, "c": 5})  # x re-embedded later
    compactor = Compactor(settings)
    assert compactor.candidates(max_rows=10) == [{"prompt": PROMPT, "model_id": MODEL}]

    result = compactor.compact(PROMPT, MODEL, "compact-1", max_rows=10)
    assert result["compacted"] == 3 and result["rows"] == 4
    manifest = ManifestStore(settings).get(PROMPT, MODEL)
    assert manifest.shards == (result["shard"],) and manifest.rows == 4
    table = ShardStore(settings).read(result["shard"])
    assert table.column("image_id").to_pylist() == ["a", "b", "c", "x"]
    np.testing.assert_allclose(table.column("embedding").to_pylist()[3], _vec(4))
    for key in (k1, k2, k3):
        assert not ShardStore(settings).exists(key)
    assert {EmbeddingStore(settings).get(i)["shard_key"] for i in "abcx"} == {result["shard"]}

    # nothing left to merge: a second pass is a no-op
    assert compactor.compact(PROMPT, MODEL, "compact-2", max_rows=10)["compacted"] == 0
    assert ManifestStore(settings).get(PROMPT, MODEL) == manifest


def test_big_shards_are_left_alone(stack):
    settings = stack.settings
    _commit_run(settings, "run-1", {f"i{n}": n for n in range(5)})
    _commit_run(settings, "run-2", {"z": 9})
    assert Compactor(settings).candidates(max_rows=3) == []
    assert Compactor(settings).compact(PROMPT, MODEL, "c", max_rows=3)["compacted"] == 0


def test_candidates_come_from_every_page_of_the_manifest_scan(stack):
    settings = stack.settings
    prompts = ["a cat", "a dog", "a fox"]
    for n, prompt in enumerate(prompts):
        _commit_run(settings, "run-1", {f"{n}a": 1}, prompt)
        _commit_run(settings, "run-2", {f"{n}b": 2}, prompt)
    _commit_run(settings, "run-1", {f"big{n}": n for n in range(5)}, "a big one")
    client = aws.client(settings, "dynamodb")
    # one manifest per Scan page: only a caller that follows LastEvaluatedKey sees them all
    client.meta.events.register(
        "before-parameter-build.dynamodb.Scan", lambda params, **_: params.update(Limit=1)
    )
    compactor = Compactor(settings, manifests=ManifestStore(settings, client))
    found = compactor.candidates(max_rows=3)
    assert sorted(c["prompt"] for c in found) == prompts
    assert {c["model_id"] for c in found} == {MODEL}


def test_orphan_shards_are_deleted_only_when_old_enough(stack):
    settings = stack.settings
    listed = _commit_run(settings, "run-1", {"a": 1})
    orphan = shard_key(MODEL, PROMPT, "crashed-run")
    ShardStore(settings).write(orphan, ShardStore(settings).read(listed))
    compactor = Compactor(settings)
    assert compactor.delete_orphans(PROMPT, MODEL, older_than=timedelta(hours=1)) == []
    assert compactor.delete_orphans(PROMPT, MODEL, older_than=timedelta(0)) == [orphan]
    assert ShardStore(settings).exists(listed)
    keys = [
        o["Key"]
        for o in aws.client(settings, "s3").list_objects_v2(
            Bucket=settings.bucket, Prefix="embeddings/"
        )["Contents"]
    ]
    assert keys == [listed]


def test_merged_shards_hold_at_most_max_rows_each(stack):
    settings = stack.settings
    for n in range(5):
        _commit_run(settings, f"run-{n}", {f"i{n}{m}": n * 10 + m for m in range(3)})
    compactor = Compactor(settings)
    result = compactor.compact(PROMPT, MODEL, "compact-1", max_rows=7)
    # [3, 3] [3, 3] merged; the last shard alone has nothing to merge with
    assert result["compacted"] == 4 and len(result["shards"]) == 2
    manifest = ManifestStore(settings).get(PROMPT, MODEL)
    assert [manifest.shard_rows[k] for k in manifest.shards] == [6, 6, 3]
    ids = [i for k in manifest.shards for i in ShardStore(settings).ids(k).to_pylist()]
    assert sorted(ids) == sorted(f"i{n}{m}" for n in range(5) for m in range(3))
    for key in manifest.shards:
        assert {
            EmbeddingStore(settings).get(i)["shard_key"]
            for i in ShardStore(settings).ids(key).to_pylist()
        } == {key}
    assert compactor.candidates(max_rows=7) == []
    assert compactor.compact(PROMPT, MODEL, "compact-2", max_rows=7)["compacted"] == 0


def test_tombstones_rewrite_only_the_shards_that_hold_them_reading_ids_alone(stack):
    settings = stack.settings
    keys = [
        _commit_run(settings, f"run-{n}", {f"i{n}{m}": n * 10 + m for m in range(5)})
        for n in range(3)
    ]
    ManifestStore(settings).update(
        PROMPT, MODEL, lambda m: m.with_tombstones(frozenset({"i12", "gone"}))
    )
    compactor = Compactor(settings)
    whole_reads: list[str] = []
    read = compactor.shards.read
    compactor.shards.read = lambda key, columns=None: whole_reads.append(key) or read(key, columns)  # type: ignore[method-assign]

    result = compactor.compact(PROMPT, MODEL, "compact-1", max_rows=3)  # every shard is big
    assert whole_reads == []  # found by the image_id column, rewritten row group by row group
    assert result["compacted"] == 1 and result["rows"] == 4
    manifest = ManifestStore(settings).get(PROMPT, MODEL)
    assert manifest.shards[0] == keys[0] and manifest.shards[-1] == keys[2]
    assert [manifest.shard_rows[k] for k in manifest.shards] == [5, 3, 1, 5]
    assert manifest.tombstones == frozenset()  # i12's row is gone, "gone" was in no shard
    middle = [i for k in manifest.shards[1:3] for i in ShardStore(settings).ids(k).to_pylist()]
    assert middle == ["i10", "i11", "i13", "i14"]
    assert not ShardStore(settings).exists(keys[1])
    assert EmbeddingStore(settings).get("i14")["shard_key"] == manifest.shards[2]
    assert compactor.candidates(max_rows=3) == []


def test_a_shard_s_ids_are_read_without_its_vectors(stack):
    """Finding deleted rows reads the footer and the image_id column chunks by range, not
    the vectors: a small share of the object."""
    settings = stack.settings
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((20_000, 512)).astype(np.float32)
    rows = [ShardRow(f"i{n:05d}", v, T0, "k", "e") for n, v in enumerate(vectors)]
    key = shard_key(MODEL, PROMPT, "big-run")
    shards = ShardStore(settings)
    shards.write(key, rows_table(rows, 512, MODEL, PROMPT))
    size = aws.client(settings, "s3").head_object(Bucket=settings.bucket, Key=key)["ContentLength"]
    fetched: list[int] = []

    def count(params, **_):
        start, end = params["Range"].removeprefix("bytes=").split("-")
        fetched.append(int(end) - int(start) + 1)

    shards.client.meta.events.register("before-parameter-build.s3.GetObject", count)
    assert shards.ids(key).to_pylist() == [r.image_id for r in rows]
    assert fetched and sum(fetched) < size // 50


def test_a_large_shard_is_rewritten_row_group_by_row_group_into_max_rows_shards(stack, monkeypatch):
    settings = stack.settings
    monkeypatch.setattr("pipeline.storage.shards.ROW_GROUP_ROWS", 4)  # 10 rows: 3 groups
    key = _commit_run(settings, "run-1", {f"i{n:02d}": n for n in range(10)})
    assert ShardStore(settings).open(key).num_row_groups == 3
    ManifestStore(settings).update(PROMPT, MODEL, lambda m: m.with_tombstones(frozenset({"i04"})))
    result = Compactor(settings).compact(PROMPT, MODEL, "compact-1", max_rows=3)
    assert (result["compacted"], result["rows"], len(result["shards"])) == (1, 9, 3)
    manifest = ManifestStore(settings).get(PROMPT, MODEL)
    assert [manifest.shard_rows[k] for k in manifest.shards] == [3, 3, 3]
    ids = [i for k in manifest.shards for i in ShardStore(settings).ids(k).to_pylist()]
    assert ids == [f"i{n:02d}" for n in range(10) if n != 4]
    assert manifest.tombstones == frozenset()
    assert EmbeddingStore(settings).get("i09")["shard_key"] == manifest.shards[2]
