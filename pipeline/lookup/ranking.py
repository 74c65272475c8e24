"""Exact cosine top-k over a candidate matrix of L2-normalized float32 vectors. Pure numpy.

Ties are broken by image_id (ascending), so the result equals a full sort by
(-score, image_id): the brute-force reference the tests compare with.

A score must not depend on where its row sits in the matrix: a keyset cursor carries the score
of the last row of a page to the next page, which may be cut from a matrix of another manifest
version (rows added, or reordered by a compaction). BLAS (`matrix @ query`) rounds a row
differently by its position, so it only narrows the candidates; every score that decides an
order, a filter or a page boundary is recomputed with `exact_scores`, whose rounding depends
on the row's values alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# A page position: (score, image_id) of the last row a page returned.
Position = tuple[float, str]


@dataclass(frozen=True)
class Ranked:
    ids: list[str]
    scores: list[float]
    total: int  # candidates that passed the filters (for pagination)
    rows: list[int]  # positions in the matrix, for looking up other columns
    remaining: int = 0  # candidates after `after` (this page's rows included)


def exact_scores(matrix: np.ndarray, query: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Cosine of the given rows, rounded the same way wherever a row sits (pairwise float32
    sums of each row on its own)."""
    return (matrix[rows] * query).sum(axis=1, dtype=np.float32)


def _tolerance(query: np.ndarray) -> np.float32:
    """How far a BLAS score may be from the exact one, for unit rows (a generous bound)."""
    return np.float32(
        4 * query.size * np.finfo(np.float32).eps * max(1.0, float(np.linalg.norm(query)))
    )


def rank(
    matrix: np.ndarray,
    ids: np.ndarray,
    query: np.ndarray,
    limit: int,
    exclude: str | None = None,
    min_score: float | None = None,
    after: Position | None = None,
) -> Ranked:
    """The best `limit` candidates by cosine to `query` that rank after `after` (all of them
    without it), `exclude` left out."""
    query = np.asarray(query, dtype=np.float32)
    approx = matrix @ query
    tol = _tolerance(query)
    keep = np.ones(len(ids), dtype=bool)
    if exclude is not None:
        keep &= ids != exclude
    if min_score is not None:
        keep &= _at_least(matrix, query, approx, tol, np.float32(min_score))
    total = int(np.count_nonzero(keep))
    if after is not None:
        keep &= _after(matrix, ids, query, approx, tol, after)
    candidates = np.flatnonzero(keep)
    remaining = int(candidates.size)
    if remaining == 0 or limit <= 0:
        return Ranked([], [], total, [], remaining)
    chosen = candidates
    if limit < remaining:
        # everything that may be as good as the limit-th best score, ties included
        part = np.partition(approx[candidates], remaining - limit)
        chosen = candidates[approx[candidates] >= part[remaining - limit] - 2 * tol]
    scores = exact_scores(matrix, query, chosen)
    order = np.lexsort((ids[chosen], -scores))[:limit]
    picked = chosen[order]
    return Ranked(
        [str(i) for i in ids[picked]],
        [float(s) for s in scores[order]],
        total,
        [int(r) for r in picked],
        remaining,
    )


def _at_least(
    matrix: np.ndarray, query: np.ndarray, approx: np.ndarray, tol: np.float32, bound: np.float32
) -> np.ndarray:
    """score >= bound, with exact scores where BLAS is too close to tell."""
    passed = approx >= bound
    near = np.flatnonzero(np.abs(approx - bound) <= tol)
    if near.size:
        passed[near] = exact_scores(matrix, query, near) >= bound
    return passed


def _after(
    matrix: np.ndarray,
    ids: np.ndarray,
    query: np.ndarray,
    approx: np.ndarray,
    tol: np.float32,
    after: Position,
) -> np.ndarray:
    """Rows that sort after `after` in (-score, image_id) order."""
    score, last_id = np.float32(after[0]), after[1]
    later = approx < score
    near = np.flatnonzero(np.abs(approx - score) <= tol)
    if near.size:
        exact = exact_scores(matrix, query, near)
        tied = exact == score
        later[near] = exact < score
        later[near[tied]] = [str(i) > last_id for i in ids[near[tied]]]
    return later
