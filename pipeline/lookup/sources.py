"""Where a prompt's candidates are ranked: the exact scan of the shards in memory, or the vector
index (pgvector HNSW) for the shards it has synced merged with the exact scan of the newer
ones. Both answer the same question (the best `limit` rows after a keyset position, with the
same filters) so the lookup's rules (current records, tombstones, dedupe, cursors) sit above
either unchanged.

A just-committed image is found by the next lookup: its shard is pending until the sync has
upserted it, and pending shards are scanned exactly beside the index, their rows winning over
the index's rows of the same images (a later shard's row wins, as in the exact scan).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from pipeline.lookup.candidates import Candidates
from pipeline.lookup.ranking import Position, rank
from pipeline.storage.vector_index import VectorIndex

EXACT = "exact"
HNSW = "hnsw"


@dataclass(frozen=True)
class Hits:
    """Ranked rows, best first: ids, scores, and what a page shows of each."""

    ids: list[str] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    s3_keys: list[str] = field(default_factory=list)
    etags: list[str | None] = field(default_factory=list)
    total: int = 0  # candidates (see RankingSource.rank)
    exhausted: bool = True  # no candidate ranks after the last of these


class RankingSource(Protocol):
    name: str

    def rank(
        self,
        query: np.ndarray,
        limit: int,
        exclude: str | None,
        min_score: float | None,
        after: Position | None,
    ) -> Hits:
        """The best `limit` candidates after `after`; `total` counts the candidates that
        passed the filters (the exact scan) or that the source holds (the index)."""
        ...

    def etags(self, ids: Sequence[str]) -> dict[str, str | None]:
        """The object version of each of `ids` the source holds a row of."""
        ...

    def __contains__(self, image_id: object) -> bool: ...


class ExactSource:
    name = EXACT

    def __init__(self, candidates: Candidates) -> None:
        self.candidates = candidates
        self._rows = {str(i): n for n, i in enumerate(candidates.ids)}

    def rank(
        self,
        query: np.ndarray,
        limit: int,
        exclude: str | None,
        min_score: float | None,
        after: Position | None,
    ) -> Hits:
        c = self.candidates
        ranked = rank(c.matrix, c.ids, query, limit, exclude, min_score, after)
        return Hits(
            ranked.ids,
            ranked.scores,
            [str(c.s3_keys[r]) for r in ranked.rows],
            [c.etags[r] for r in ranked.rows],
            ranked.total,
            ranked.remaining <= len(ranked.ids),
        )

    def etags(self, ids: Sequence[str]) -> dict[str, str | None]:
        return {i: self.candidates.etags[self._rows[i]] for i in ids if i in self._rows}

    def __contains__(self, image_id: object) -> bool:
        return image_id in self._rows


class IndexSource:
    """The index table's rows, and the pending shards' rows (`newer`) over them."""

    name = HNSW

    def __init__(
        self, index: VectorIndex, table: str, index_rows: int, newer: Candidates | None
    ) -> None:
        self.index = index
        self.table = table
        self.index_rows = index_rows
        self.newer = ExactSource(newer) if newer is not None and len(newer.ids) else None

    def rank(
        self,
        query: np.ndarray,
        limit: int,
        exclude: str | None,
        min_score: float | None,
        after: Position | None,
    ) -> Hits:
        newer = self.newer.rank(query, limit, exclude, min_score, after) if self.newer else Hits()
        newer_rows = self.newer  # their images' rows in the index are shadowed
        found: list[tuple[float, str, str, str | None]] = []
        position, exhausted = after, False
        while len(found) < limit and not exhausted:
            batch = self.index.search(self.table, query, limit, exclude, min_score, position)
            found += [
                (h.score, h.image_id, h.s3_key, h.source_etag)
                for h in batch
                if newer_rows is None or h.image_id not in newer_rows
            ]
            exhausted = len(batch) < limit
            if batch:
                position = (batch[-1].score, batch[-1].image_id)
        found += list(zip(newer.scores, newer.ids, newer.s3_keys, newer.etags, strict=True))
        found.sort(key=lambda hit: (-hit[0], hit[1]))
        page = found[:limit]
        return Hits(
            [h[1] for h in page],
            [h[0] for h in page],
            [h[2] for h in page],
            [h[3] for h in page],
            self.index_rows + (len(self.newer.candidates.ids) if self.newer else 0),
            exhausted and newer.exhausted and len(found) <= limit,
        )

    def etags(self, ids: Sequence[str]) -> dict[str, str | None]:
        newer = self.newer.etags(ids) if self.newer else {}
        rest = [i for i in ids if i not in newer]
        return {**self.index.etags(self.table, rest), **newer}

    def __contains__(self, image_id: object) -> bool:
        return isinstance(image_id, str) and bool(self.etags([image_id]))
