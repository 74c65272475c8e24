"""The pure parts of deletion, duplicates and lookup visibility: sequencer order,
near-duplicate choice, and which ranked candidates a deduplicated page shows."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from pipeline.deletion.sequencers import normalized
from pipeline.duplicates.near import nearest_earlier
from pipeline.ingest.notifications import CREATED, REMOVED, object_events
from pipeline.lookup.visibility import Visibility, group_of
from pipeline.storage.shards import ShardRow, merge_tables, rows_table

EVENTS = Path(__file__).parents[1] / "events"
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def test_sequencers_compare_as_s3_documents_after_right_padding():
    # S3: right-pad the shorter with zeros, then compare as strings
    assert normalized("0055AED6DCD90281E5") > normalized("0055AED6DCD90281E4")
    assert normalized("0055AED6DCD9028") < normalized("0055AED6DCD90281")
    assert normalized("0055aed6") == normalized("0055AED600")
    assert normalized(None) is None and normalized("") is None
    with pytest.raises(ValueError):
        normalized("not-hex")


def test_a_removal_event_is_parsed_with_its_sequencer():
    body = json.loads(
        json.loads((EVENTS / "sqs_s3_put_aws.json").read_text())["Records"][0]["body"]
    )
    obj = body["Records"][0]["s3"]["object"]
    body["Records"][0]["eventName"] = "ObjectRemoved:Delete"
    del obj["eTag"], obj["size"]
    [event] = object_events(json.dumps(body))
    assert (event.kind, event.etag, event.sequencer) == (REMOVED, None, "0066A1B2C3D4E5F601")
    assert event.key == "uploads/golden retriever (1).jpg"
    body["Records"][0]["eventName"] = "ObjectCreated:Copy"
    assert object_events(json.dumps(body))[0].kind == CREATED


def _unit(*values: float) -> np.ndarray:
    v = np.asarray(values, np.float32)
    return v / np.linalg.norm(v)


def _table(rows: dict[str, tuple[np.ndarray, int]]):
    shard_rows = [
        ShardRow(i, v, T0 + timedelta(seconds=minute), f"uploads/{i}.jpg", "etag-" + i)
        for i, (v, minute) in rows.items()
    ]
    return rows_table(shard_rows, 3, "m", "p")


def test_a_new_image_points_to_the_earliest_image_above_the_threshold():
    table = _table(
        {
            "late": (_unit(1, 0.01, 0), 5),  # a near copy of "first", recorded later
            "first": (_unit(1, 0, 0), 1),
            "second": (_unit(1, 0.02, 0), 2),
            "other": (_unit(0, 1, 0), 0),
        }
    )
    found = nearest_earlier(["late", "second", "first", "other", "absent"], table, 0.99)
    assert found == {"late": "first", "second": "first"}
    assert nearest_earlier(["late"], table, 0.99999999) == {}


def test_compaction_leaves_tombstoned_rows_out():
    a = _table({"x": (_unit(1, 0, 0), 0), "y": (_unit(0, 1, 0), 0)})
    b = _table({"z": (_unit(0, 0, 1), 0)})
    merged = merge_tables([a, b], frozenset({"y", "absent"}))
    assert merged.column("image_id").to_pylist() == ["x", "z"]


def test_group_of_names_the_root():
    assert group_of("a", None) == "a"
    assert group_of("b", {"duplicate_of": "a"}) == "a"
    assert group_of("c", {"duplicate_of": "b", "near_duplicate_of": "a"}) == "a"


def test_a_deduplicated_page_keeps_the_root_or_else_the_best_ranked_member():
    ids = np.array(["root", "m1", "m2", "n1", "n2", "solo", "gone"], dtype=object)
    records = {
        "m1": {"near_duplicate_of": "root"},
        "m2": {"near_duplicate_of": "root"},
        "n1": {"near_duplicate_of": "deleted-root"},
        "n2": {"duplicate_of": "deleted-root"},
        "q1": {"near_duplicate_of": "query"},
    }
    asked: list[list[str]] = []

    def current(roots: list[str]) -> set[str]:
        asked.append(roots)
        return set(roots)

    page = ["m1", "n1", "root", "n2", "solo", "gone", "m2"]
    plain = Visibility(frozenset({"gone"}), ids).keep(page, records)
    assert plain == [True, True, True, True, True, False, True]
    visible = Visibility(frozenset({"gone"}), ids, dedupe=True, current=current)
    assert visible.keep(page, records) == [False, True, True, False, True, False, False]
    assert asked == [["root"]]  # "deleted-root" is no candidate: no read
    # a later page of the same query: n1's group was shown already
    assert visible.keep(["n2", "q1"], records) == [False, True]
    copies = Visibility(frozenset(), ids, dedupe=True, query_group="query", current=current)
    assert copies.keep(["q1", "solo"], records) == [False, True]
