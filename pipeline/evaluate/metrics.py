"""hit@k and precision@k over ranked result labels. Pure functions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

KS = (1, 5, 10)


@dataclass(frozen=True)
class Scores:
    queries: int
    hit: dict[int, float]  # k -> share of queries with a result of their label in the top k
    precision_at_10: float  # mean share of the top 10 that carry the query's label

    def as_dict(self) -> dict[str, float | int]:
        return {
            "queries": self.queries,
            **{f"hit@{k}": round(v, 4) for k, v in self.hit.items()},
            "precision@10": round(self.precision_at_10, 4),
        }


def score(query_labels: Sequence[str], ranked: Sequence[Sequence[str]]) -> Scores:
    """`ranked[i]`: the labels of query i's results, best first (at least 10 where the index
    holds 10). A query with fewer than 10 results counts the missing ones as misses."""
    if len(query_labels) != len(ranked) or not ranked:
        raise ValueError("one ranked list per query, and at least one query")
    right = np.zeros((len(ranked), max(KS)), dtype=bool)
    for row, (label, results) in enumerate(zip(query_labels, ranked, strict=True)):
        top = list(results)[: max(KS)]
        right[row, : len(top)] = [r == label for r in top]
    return Scores(
        queries=len(ranked),
        hit={k: float(right[:, :k].any(axis=1).mean()) for k in KS},
        precision_at_10=float(right[:, :10].mean()),
    )
