"""Embed with a model artifact in this process (the job's own inference code) and rank with
the lookup's own top-k: what the stack would answer, without the stack."""

from __future__ import annotations

import tarfile
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from pipeline.lookup.ranking import rank
from sagemaker_jobs.image_embed.code import inference
from sagemaker_jobs.image_embed.code.batch import Request

Progress = Callable[[int], None]


def load_model(artifact: Path, work: Path) -> inference.EmbeddingModel:
    model_dir = Path(work) / "model"
    with tarfile.open(artifact) as tar:
        tar.extractall(model_dir, filter="data")
    return inference.model_fn(str(model_dir))


def _chunks(items: list[bytes], size: int) -> Iterator[tuple[int, list[bytes]]]:
    for start in range(0, len(items), size):
        yield start, items[start : start + size]


def embed(
    model: inference.EmbeddingModel, images: list[bytes], progress: Progress | None = None
) -> np.ndarray:
    """One L2-normalized vector per image; an image the model cannot read is an error."""
    vectors = []
    for start, chunk in _chunks(images, 64):
        requests = [Request(image_id=str(start + i), data=d) for i, d in enumerate(chunk)]
        for result in inference.predict_fn(requests, model):
            if "embedding" not in result:
                raise ValueError(f"image {result['image_id']}: {result['error']}")
            vectors.append(result["embedding"])
        if progress:
            progress(len(chunk))
    return np.asarray(vectors, dtype=np.float32)


def top_k(index: np.ndarray, ids: list[str], queries: np.ndarray, k: int = 10) -> list[list[str]]:
    """The ids of each query's k best index rows, as GET/POST /similarity orders them."""
    id_array = np.asarray(ids)
    return [rank(index, id_array, query, k).ids for query in queries]


def ranked_ids(
    artifact: Path,
    index_images: list[bytes],
    index_ids: list[str],
    query_images: list[bytes],
    progress: Progress | None = None,
) -> tuple[str, list[list[str]]]:
    """(model_id, each query's top-10 index ids)."""
    with tempfile.TemporaryDirectory(prefix="imgsim-eval-") as work:
        model = load_model(artifact, Path(work))
        index = embed(model, index_images, progress)
        queries = embed(model, query_images, progress)
    return model.embedder.model_id, top_k(index, index_ids, queries)
