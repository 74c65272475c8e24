"""One evaluation: load a labelled set, split it (seeded, stratified), rank each query's
top 10 with each model (in-process) or with the running stack (API), score, one row each."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from pipeline.evaluate import in_process, through_api
from pipeline.evaluate.datasets import (
    LabelledImages,
    load_dataset,
    stratified_sample,
    stratified_split,
)
from pipeline.evaluate.metrics import Scores, score
from pipeline.settings import Settings

DEFAULT_MODEL_CACHE = Path(__file__).resolve().parents[2] / "build" / "models"


@dataclass(frozen=True)
class Split:
    name: str
    index: LabelledImages
    queries: LabelledImages
    ids: list[str] = field(default_factory=list)  # the index images' ids (ties sort by id)


@dataclass(frozen=True)
class Row:
    model_id: str
    mode: str  # "in-process" or the API URL
    dataset: str
    index_size: int
    scores: Scores
    seconds: float

    def as_dict(self) -> dict[str, object]:
        return {
            "model_id": self.model_id,
            "mode": self.mode,
            "dataset": self.dataset,
            "index": self.index_size,
            **self.scores.as_dict(),
            "seconds": round(self.seconds, 1),
        }


def make_split(
    data: LabelledImages, limit: int | None = None, seed: int = 0, query_fraction: float = 0.2
) -> Split:
    if limit:
        data = data.subset(stratified_sample(data.labels, limit, seed))
    index_rows, query_rows = stratified_split(data.labels, query_fraction, seed)
    tag = f"{len(data.images)}s{seed}"
    ids = [f"eval-{tag}-{row:06d}" for row in index_rows]
    return Split(f"{data.name}[{tag}]", data.subset(index_rows), data.subset(query_rows), ids)


def _scores(split: Split, ranked: list[list[str]]) -> Scores:
    label_of = dict(zip(split.ids, split.index.labels, strict=True))
    return score(split.queries.labels, [[label_of.get(i, "") for i in r] for r in ranked])


def _bar(description: str, total: int, show: bool) -> tqdm:
    return tqdm(total=total, desc=description, unit="img", disable=not show, leave=False)


def evaluate_artifact(split: Split, artifact: Path, progress: bool = True) -> Row:
    started = time.monotonic()
    total = len(split.index.images) + len(split.queries.images)
    with _bar(f"{Path(artifact).name} on {split.name}", total, progress) as bar:
        model_id, ranked = in_process.ranked_ids(
            artifact, split.index.images, split.ids, split.queries.images, bar.update
        )
    return Row(
        model_id,
        "in-process",
        split.name,
        len(split.ids),
        _scores(split, ranked),
        time.monotonic() - started,
    )


def evaluate_api(
    split: Split, api_url: str, settings: Settings, progress: bool = True, timeout_s: float = 1800
) -> Row:
    """Through the stack, under a prompt of its own (so no other image takes a place)."""
    started = time.monotonic()
    run_tag = uuid.uuid4().hex[:8]
    split = Split(split.name, split.index, split.queries, [f"{i}-{run_tag}" for i in split.ids])
    run = through_api.ApiRun(api_url, settings, f"eval {split.name} {run_tag}", timeout_s)
    total = 2 * len(split.ids) + len(split.queries.images)
    with _bar(f"API {api_url} on {split.name}", total, progress) as bar:
        model_id, ranked = through_api.ranked_ids(
            run, split.index.images, split.ids, split.queries.images, bar.update
        )
    return Row(
        model_id,
        api_url,
        split.name,
        len(split.ids),
        _scores(split, ranked),
        time.monotonic() - started,
    )


def resolve_model(model: str, cache_dir: Path = DEFAULT_MODEL_CACHE) -> Path:
    """A model.tar.gz path as given, or a named model built once into the cache."""
    if Path(model).is_file():
        return Path(model)
    from sagemaker_jobs.artifacts import cached_artifact

    return cached_artifact(model, cache_dir)[0]


def evaluate(
    dataset: Path,
    models: Sequence[str] = (),
    api_url: str | None = None,
    settings: Settings | None = None,
    limit: int | None = None,
    seed: int = 0,
    query_fraction: float = 0.2,
    progress: bool = True,
    cache_dir: Path = DEFAULT_MODEL_CACHE,
) -> list[Row]:
    """One row per model (in-process, over artifacts or named models), and one for the
    running stack when `api_url` is given (its bucket and endpoints from `settings`)."""
    split = make_split(load_dataset(dataset), limit, seed, query_fraction)
    rows = [evaluate_artifact(split, resolve_model(model, cache_dir), progress) for model in models]
    if api_url:
        rows.append(evaluate_api(split, api_url, settings or Settings.from_env(), progress))
    return rows


def table(rows: Sequence[Row]) -> str:
    """A Markdown table (docs/quality.md's)."""
    head = "| model | mode | dataset | index | queries | hit@1 | hit@5 | hit@10 | precision@10 |"
    lines = [head, "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        s = row.scores
        lines.append(
            f"| {row.model_id} | {row.mode} | {row.dataset} | {row.index_size} | {s.queries} "
            f"| {s.hit[1]:.3f} | {s.hit[5]:.3f} | {s.hit[10]:.3f} | {s.precision_at_10:.3f} |"
        )
    return "\n".join(lines)
