"""The pure parts of a model upgrade: which images a backfill needs, its batches, which model a
prompt was answered by before it, and the kwargs of the reembed runs a commit triggers."""

from __future__ import annotations

import pytest

from pipeline.storage.images_table import embedded_with
from pipeline.upgrade.backfill import batches, previous_model
from pipeline.upgrade.follow_up import triggers


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


def test_each_triggered_reembed_run_carries_the_transform_params_and_a_conf_derived_id():
    runs = [{"model_data_url": "s3://b/new.tar.gz", "prompts": ["cup", "fox"]}]
    transform = {"role_arn": "arn:aws:iam::1:role/sm", "instance_type": "ml.g5.xlarge"}
    [kwargs] = triggers(runs, "asset_triggered__2026", transform)
    assert kwargs["conf"] == {**transform, **runs[0]}
    assert kwargs["trigger_run_id"].startswith("asset_triggered__2026__reembed_")
    assert triggers(runs, "asset_triggered__2026", transform) == [kwargs]  # a retry: same id
    [other] = triggers([{**runs[0], "prompts": ["cup"]}], "asset_triggered__2026", transform)
    assert other["trigger_run_id"] != kwargs["trigger_run_id"]  # another conf: another run
    assert triggers([], "r", transform) == []
