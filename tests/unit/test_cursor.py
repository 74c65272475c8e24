"""Page cursors: what they carry from page to page, and what they refuse."""

from __future__ import annotations

import base64
import json

import pytest

from pipeline.errors import ApiError
from pipeline.lookup.cursor import (
    MAX_CURSOR_CHARS,
    MAX_GROUPS,
    Cursor,
    decode_cursor,
    encode_cursor,
    group_token,
)


def test_a_cursor_carries_its_position_and_the_groups_shown_through_a_member():
    groups = [group_token("orig"), group_token("other")]
    cursor = encode_cursor((0.5, "img7"), "digest", groups)
    assert decode_cursor(cursor, "digest") == Cursor((0.5, "img7"), tuple(groups))
    assert decode_cursor(encode_cursor((0.5, "img7"), "digest"), "digest").groups == ()


def test_only_the_newest_groups_are_carried_and_the_longest_cursor_is_accepted():
    groups = [group_token(f"root{i}") for i in range(MAX_GROUPS + 10)]
    cursor = encode_cursor((-1.0, "x" * 128), "d" * 16, groups)
    decoded = decode_cursor(cursor, "d" * 16)
    assert decoded.groups == tuple(groups[-MAX_GROUPS:])
    assert len(cursor) <= MAX_CURSOR_CHARS


@pytest.mark.parametrize("groups", ["abc", [1, 2], {"a": 1}, [None]])
def test_a_cursor_with_malformed_groups_is_a_400(groups):
    raw = json.dumps({"s": 0.5, "i": "img7", "q": "digest", "g": groups}).encode()
    cursor = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    with pytest.raises(ApiError) as refused:
        decode_cursor(cursor, "digest")
    assert refused.value.status == 400
