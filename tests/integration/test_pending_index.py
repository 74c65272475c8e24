"""Pending_GSI on moto: a sparse index (only items carrying pending_shard are in it), every
write that sets `status` keeps the key present exactly while the image is pending, the embed
run's safety net reads the index, and a stack kept from before the index gets it and its
pending items' keys on the next deploy."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from pipeline import aws
from pipeline.aws_build.cfn_template import load_template
from pipeline.local.config import isolated_settings
from pipeline.local.deploy import StackSpec, deploy
from pipeline.settings import Settings
from pipeline.storage.dynamodb_codec import serialize_item
from pipeline.storage.images_table import (
    PENDING_INDEX,
    PENDING_SHARD,
    PENDING_SHARDS,
    ImageStore,
    all_pending_shards,
    pending_shard,
)
from tests.helpers import embedded_image

BEFORE = "2026-11-22T12:00:00.000Z"


def _indexed(settings: Settings) -> set[str]:
    """The ids Pending_GSI holds, every shard queried."""
    store = ImageStore(settings)
    return {i["image_id"] for shard in all_pending_shards() for i in store.pending_in_shard(shard)}


def test_moto_keeps_items_without_the_key_out_of_the_sparse_index(stack):
    settings = stack.settings
    client = aws.client(settings, "dynamodb")
    for image_id, extra in (("in", {PENDING_SHARD: "03"}), ("out", {})):
        item = {"image_id": image_id, "created_at": BEFORE, "source": "uploaded", "status": "x"}
        client.put_item(TableName=settings.images_table, Item=serialize_item(item | extra))
    answer = client.query(
        TableName=settings.images_table,
        IndexName=PENDING_INDEX,
        KeyConditionExpression=f"{PENDING_SHARD} = :s",
        ExpressionAttributeValues={":s": {"S": "03"}},
    )
    assert [i["image_id"]["S"] for i in answer["Items"]] == ["in"]
    (index,) = [
        g
        for g in client.describe_table(TableName=settings.images_table)["Table"][
            "GlobalSecondaryIndexes"
        ]
        if g["IndexName"] == PENDING_INDEX
    ]
    assert [k["AttributeName"] for k in index["KeySchema"]] == [PENDING_SHARD, "created_at"]
    assert index["Projection"] == {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["source"]}


def test_the_shard_is_stable_and_spreads_ids_over_every_shard():
    shards = {pending_shard(f"img{n:05d}") for n in range(2000)}
    assert shards == set(all_pending_shards()) and len(shards) == PENDING_SHARDS
    assert pending_shard("img00042") == pending_shard("img00042")


def _pending(store: ImageStore, image_id: str) -> None:
    store.put_version(replace(embedded_image(image_id, "a fox", "pending"), created_at=BEFORE))


def _tries(store: ImageStore, image_id: str, runs: int) -> None:
    for n in range(runs):
        assert store.note_embed_attempt(image_id, f"etag-{image_id}", f"run{n}", BEFORE)


def _given_up(store: ImageStore, image_id: str) -> None:
    _pending(store, image_id)
    _tries(store, image_id, 1)
    assert store.give_up_embedding(image_id, f"etag-{image_id}", "embedding_gave_up: x", 1)


# (name, set-up, the write, the status it leaves): each write that sets or keeps `status`
Write = Callable[[ImageStore, str], Any]
TRANSITIONS: list[tuple[str, Write, Write, str]] = [
    ("put_version pending", lambda s, i: None, _pending, "pending"),
    (
        "put_version failed",
        lambda s, i: None,
        lambda s, i: s.put_version(embedded_image(i, "a fox", "failed", "not_an_image: x")),
        "failed",
    ),
    (
        "set_outcome embedded",
        _pending,
        lambda s, i: s.set_outcome(i, f"etag-{i}", {"status": "embedded", "embedded_at": BEFORE}),
        "embedded",
    ),
    (
        "set_outcome failed",
        _pending,
        lambda s, i: s.set_outcome(i, f"etag-{i}", {"status": "failed", "error": "x: y"}),
        "failed",
    ),
    (
        "set_outcome back to pending",  # a superseded vector: embedded -> pending
        lambda s, i: s.put_version(embedded_image(i, "a fox")),
        lambda s, i: s.set_outcome(i, f"etag-{i}", {"status": "pending", "embed_attempts": 0}),
        "pending",
    ),
    (
        "set_outcome without status, pending",
        _pending,
        lambda s, i: s.set_outcome(i, f"etag-{i}", {"duplicate_of": "another"}),
        "pending",
    ),
    (
        "set_outcome without status, embedded",
        lambda s, i: s.put_version(embedded_image(i, "a fox")),
        lambda s, i: s.set_outcome(i, f"etag-{i}", {"duplicate_of": "another"}),
        "embedded",
    ),
    (
        "note_embed_attempt and claim keep pending",
        _pending,
        lambda s, i: (
            s.note_embed_attempt(i, f"etag-{i}", "run", BEFORE),
            s.claim_embed_request(i, f"etag-{i}", BEFORE, BEFORE),
            s.mark_embed_requested(i, f"etag-{i}", BEFORE),
        ),
        "pending",
    ),
    (
        "give_up_embedding",
        lambda s, i: (_pending(s, i), _tries(s, i, 2)),
        lambda s, i: s.give_up_embedding(i, f"etag-{i}", "embedding_gave_up: x", 2),
        "failed",
    ),
    (
        "reopen_failed",
        _given_up,
        lambda s, i: s.reopen_failed(i, f"etag-{i}", "embedding_gave_up"),
        "pending",
    ),
    (
        "mark_deleted pending",
        _pending,
        lambda s, i: s.mark_deleted(i, f"etag-{i}", "a fox", BEFORE, None),
        "deleted",
    ),
    (
        "put_deletion_marker",
        lambda s, i: None,
        lambda s, i: s.put_deletion_marker(i, f"uploads/{i}.jpg", BEFORE, "0001"),
        "deleted",
    ),
    (
        "put_version over a deletion marker",
        lambda s, i: s.put_deletion_marker(i, f"uploads/{i}.jpg", BEFORE, None),
        _pending,
        "pending",
    ),
]


@pytest.fixture(scope="module")
def images(module_stack) -> ImageStore:
    return ImageStore(module_stack.settings)


@pytest.mark.parametrize(
    ("name", "setup", "write", "status"), TRANSITIONS, ids=[t[0] for t in TRANSITIONS]
)
def test_pending_shard_is_present_exactly_while_pending(images, name, setup, write, status):
    image_id = "t-" + name.replace(" ", "-").replace(",", "")
    setup(images, image_id)
    write(images, image_id)
    record = images.get(image_id)
    assert record is not None and record["status"] == status
    if status == "pending":
        assert record[PENDING_SHARD] == pending_shard(image_id)
    else:
        assert PENDING_SHARD not in record
    assert (image_id in _indexed(images.settings)) == (status == "pending")


def test_a_status_write_may_not_set_the_key_itself(images):
    with pytest.raises(ValueError, match="follows status"):
        images.set_outcome("any", "etag", {PENDING_SHARD: "00"})


def test_pending_reads_the_index_page_by_page_and_only_images_recorded_before(stack):
    settings = stack.settings
    store = ImageStore(settings)
    times = {f"p{n:02d}": f"2026-11-22T1{n % 3}:00:00.000Z" for n in range(40)}
    for image_id, created in times.items():
        store.put_version(replace(embedded_image(image_id, "a fox", "pending"), created_at=created))
    store.put_version(embedded_image("done", "a fox"))
    client = aws.client(settings, "dynamodb")
    calls: list[str] = []
    # one item per page: only a reader that follows LastEvaluatedKey sees them all
    client.meta.events.register(
        "before-parameter-build.dynamodb.Query", lambda params, **_: params.update(Limit=1)
    )
    client.meta.events.register("before-call.dynamodb", lambda model, **_: calls.append(model.name))
    reader = ImageStore(settings, client)

    found = reader.pending("2026-11-22T12:00:00.000Z")

    expected = sorted(i for i, t in times.items() if t < "2026-11-22T12:00:00.000Z")
    assert sorted(r["image_id"] for r in found) == expected
    assert all(r["prompt"] == "a fox" and r["etag"] == f"etag-{r['image_id']}" for r in found)
    assert "Scan" not in calls and calls.count("Query") > PENDING_SHARDS
    assert reader.pending("") == [] and reader.pending("2000-01-01T00:00:00.000Z") == []


def test_a_stack_kept_from_before_the_index_gets_it_and_its_pending_keys(
    moto_server, tmp_path: Path
):
    """The local stack's state survives `imgsim down`/`up`, and its deploy only creates: a
    table from an older template lacks Pending_GSI, and its pending items lack the key."""
    old = load_template()
    table = old["Resources"]["ImagesTable"]["Properties"]
    table["GlobalSecondaryIndexes"] = [
        g for g in table["GlobalSecondaryIndexes"] if g["IndexName"] != PENDING_INDEX
    ]
    table["AttributeDefinitions"] = [
        d for d in table["AttributeDefinitions"] if d["AttributeName"] != PENDING_SHARD
    ]
    path = tmp_path / "old-template.json"
    path.write_text(json.dumps(old))
    settings = isolated_settings(moto_server.url, "test-kept")
    spec = StackSpec(name="imgsim-kept", code_bucket="code-kept")
    deploy(settings, spec, path)
    client = aws.client(settings, "dynamodb")
    for image_id, status in (("old-pending", "pending"), ("old-embedded", "embedded")):
        item = embedded_image(image_id, "a fox", status).to_item()
        item.pop(PENDING_SHARD, None)  # as the code before the index wrote it
        client.put_item(TableName=settings.images_table, Item=serialize_item(item))

    deploy(settings, spec)  # the next `imgsim up`

    indexes = client.describe_table(TableName=settings.images_table)["Table"]
    assert PENDING_INDEX in {g["IndexName"] for g in indexes["GlobalSecondaryIndexes"]}
    assert [r["image_id"] for r in ImageStore(settings).pending("9999")] == ["old-pending"]
    assert ImageStore(settings).get("old-embedded").get(PENDING_SHARD) is None
