"""Opaque page cursors of GET /similarity: keyset cursors, stable across manifest versions.

A cursor holds the position of the last row its page returned, (score, image_id) in the
ranking's (-score, image_id) order, and a digest of the query it belongs to (image id, prompt,
min_score, dedupe, and the model that answered it). The next page is the rows that sort after
that position in the prompt's current manifest version, so when shards are added or compacted
between two pages no row of an image present in both versions is skipped or repeated (rows
that arrive above the position are not shown; scores do not depend on a row's place in the
matrix, see ranking.py). The choice over refusing a cursor of an older version: a client
paging a busy prompt never has to start again.

With `dedupe`, a cursor also carries a short digest of each near-duplicate group an earlier
page showed through a member (its root deleted or absent), at most `MAX_GROUPS` of them, so
a later page does not show another member of the same group (pipeline.lookup.visibility).

A cursor that does not decode, or that another query returned (another model's included: the
prompt's active-model pointer switched between two pages), is refused with 400
`invalid_cursor`. The digest is a checksum, not a signature: a forged position is just a
position (it shows rows the caller could page to anyway)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
from collections.abc import Iterable
from typing import NamedTuple

from pipeline.errors import ApiError
from pipeline.lookup.ranking import Position

MAX_GROUPS = 64  # groups carried from page to page; the oldest go first beyond that
# the longest cursor this API returns: ~300 characters for a 128-character id, plus 20 per
# group (15 characters of JSON each, base64-encoded)
MAX_CURSOR_CHARS = 512 + 20 * MAX_GROUPS


class Cursor(NamedTuple):
    """Where the next page starts, and the dedupe groups earlier pages showed via a member."""

    position: Position
    groups: tuple[str, ...] = ()  # group_token()s, oldest first


def group_token(group: str) -> str:
    """A near-duplicate group's root id as the cursor carries it (short and fixed-size)."""
    return hashlib.sha256(group.encode()).hexdigest()[:12]


def query_digest(
    image_id: str,
    prompt: str,
    min_score: float | None,
    dedupe: bool = False,
    model_id: str | None = None,
    exact: bool = False,
) -> str:
    """What ties a cursor to its query (k may change from page to page): the scores of a
    page depend on the model that answered it, so a cursor of another model is refused, and
    on the ranking (the exact scan's and the index's round differently)."""
    text = json.dumps([image_id, prompt, min_score, bool(dedupe), model_id, *(["exact"] * exact)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def encode_cursor(position: Position, digest: str, groups: Iterable[str] = ()) -> str:
    score, image_id = position
    data: dict[str, object] = {"s": score, "i": image_id, "q": digest}
    tokens = list(dict.fromkeys(groups))[-MAX_GROUPS:]
    if tokens:
        data["g"] = tokens
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, digest: str) -> Cursor:
    """The position (and groups) a cursor of this query holds; 400 for anything else."""
    refused = ApiError(400, "invalid_cursor", "cursor is not one this API returned")
    if len(cursor) > MAX_CURSOR_CHARS:
        raise refused
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
        score, image_id, groups = data["s"], data["i"], data.get("g", [])
        ok = data["q"] == digest and isinstance(image_id, str)
    except (binascii.Error, ValueError, KeyError, TypeError, AttributeError, RecursionError):
        raise refused from None
    if not ok or isinstance(score, bool) or not isinstance(score, int | float):
        raise refused
    if not math.isfinite(score) or not image_id:
        raise refused
    if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
        raise refused
    return Cursor((float(score), image_id), tuple(groups))
