"""Exact cosine top-k over a candidate matrix of L2-normalized float32 vectors. Pure numpy.

Ties are broken by image_id (ascending), so the result equals a full sort by
(-score, image_id): the brute-force reference the tests compare with.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Ranked:
    ids: list[str]
    scores: list[float]
    total: int  # candidates that passed the filters (for pagination)
    rows: list[int]  # positions in the matrix, for looking up other columns


def rank(
    matrix: np.ndarray,
    ids: np.ndarray,
    query: np.ndarray,
    limit: int,
    exclude: str | None = None,
    min_score: float | None = None,
) -> Ranked:
    """The best `limit` candidates by cosine to `query`, `exclude` left out."""
    scores = matrix @ np.asarray(query, dtype=np.float32)
    keep = np.ones(len(ids), dtype=bool)
    if exclude is not None:
        keep &= ids != exclude
    if min_score is not None:
        keep &= scores >= np.float32(min_score)
    candidates = np.flatnonzero(keep)
    total = int(candidates.size)
    if total == 0 or limit <= 0:
        return Ranked([], [], total, [])
    chosen = candidates
    if limit < total:
        # everything at least as good as the limit-th best score, ties included
        threshold = np.partition(scores[candidates], total - limit)[total - limit]
        chosen = candidates[scores[candidates] >= threshold]
    order = np.lexsort((ids[chosen], -scores[chosen]))[:limit]
    picked = chosen[order]
    return Ranked(
        [str(i) for i in ids[picked]],
        [float(s) for s in scores[picked]],
        total,
        [int(r) for r in picked],
    )
