"""The pure parts of a model upgrade: which images a backfill needs, its batches, which model a
prompt was answered by before it, and which reembed runs a commit calls for after a switch (on
a pointer table of the local stack)."""

from __future__ import annotations

import pytest

from pipeline.storage.active_models import ActiveModels, Pointer
from pipeline.storage.images_table import embedded_with
from pipeline.upgrade.backfill import batches, previous_model
from pipeline.upgrade.follow_up import follow_up_runs


def _record(image_id: str, prompt: str | None, **extra: object) -> dict:
    return {
        "image_id": image_id,
        "s3_key": f"uploads/{image_id}.jpg",
        "etag": "e",
        "created_at": "2026-11-01T00:00:00.000Z",
        **({"prompt": prompt} if prompt else {}),
        **extra,
    }


def test_batches_are_ordered_by_prompt_then_image_and_cut_at_the_size():
    records = [_record("b", "fox"), _record("a", "fox"), _record("c", None), _record("d", "cup")]
    cut = batches(records, 2)
    assert [[t.image_id for t in batch] for batch in cut] == [["c", "d"], ["a", "b"]]
    assert batches([], 5) == []
    with pytest.raises(ValueError, match="at least 1"):
        batches(records, 0)


def test_a_record_has_a_vector_of_its_own_model_or_of_one_a_backfill_noted():
    own = _record("a", "fox", embedding_model_id="old")
    both = _record("b", "fox", embedding_model_id="old", embedded_models={"old", "new"})
    assert embedded_with(own, "old", strict=True) and not embedded_with(own, "new", strict=True)
    assert embedded_with(both, "new", strict=True)
    legacy = _record("c", "fox")  # written before records named their model
    assert not embedded_with(legacy, "new", strict=True)  # a backfill re-embeds it
    assert embedded_with(legacy, "new")  # a lookup of any model may show it, as before


def test_the_previous_model_is_the_pointer_else_the_other_model_with_most_rows():
    assert previous_model("pinned", {"a": 9}, "new") == "pinned"
    assert previous_model(None, {"a": 3, "b": 7, "new": 50}, "new") == "b"
    assert previous_model(None, {"new": 5}, "new") is None


def test_a_commit_calls_for_a_reembed_run_per_artifact_of_its_switched_prompts(stack):
    active = ActiveModels(stack.settings)
    at = "2026-11-02T00:00:00.000Z"
    new_url, other_url = "s3://b/models/new/model.tar.gz", "s3://b/models/other/model.tar.gz"
    assert active.pin("pinned", "new", at) == "new"  # no artifact: nothing says what re-embeds
    assert active.switch("same", None, "old", at, "s3://b/old.tar.gz")  # the run's own model
    assert active.switch("fox", None, "new", at) and active.switch("fox", "new", "new", at, new_url)
    assert active.switch("cup", None, "new", at, new_url)
    assert active.switch("moth", None, "other", at, other_url)
    assert active.pointer("fox") == Pointer("new", new_url)
    assert active.model_data_url("pinned") is None and active.pointer("nothing") is None
    report = {"model_id": "old", "prompts": ["pinned", "same", "fox", "cup", "moth", "nothing"]}
    assert follow_up_runs(active, report) == [
        {"model_data_url": new_url, "prompts": ["cup", "fox"]},
        {"model_data_url": other_url, "prompts": ["moth"]},
    ]
    assert follow_up_runs(active, {"model_id": "new", "prompts": ["fox", "cup"]}) == []
    assert follow_up_runs(active, {"model_id": None, "prompts": []}) == []  # nothing embedded
