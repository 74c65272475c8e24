"""Batch execution: fetch, decode and preprocess images in worker threads while the model runs
forward passes on the previous batch. One bad image yields an error line, never a failed batch.
"""

from __future__ import annotations

import io
import json
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

try:
    from .embedders import Embedder
except ImportError:  # SageMaker imports code/ modules top-level
    from embedders import Embedder  # type: ignore[no-redef]

MAX_PIXELS = 4096 * 4096


@dataclass(frozen=True)
class Request:
    image_id: str | None
    s3_uri: str | None = None
    data: bytes | None = None


def parse_json_lines(body: bytes | str) -> list[Request]:
    """`{"image_id", "s3_uri"}` per line; blank lines are skipped."""
    text = body.decode("utf-8") if isinstance(body, (bytes, bytearray)) else body
    requests = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            requests.append(Request(image_id=str(item["image_id"]), s3_uri=item["s3_uri"]))
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"line {number} is not {{image_id, s3_uri}} JSON ({exc})") from None
    return requests


def decode(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as image:
        width, height = image.size
        if width * height > MAX_PIXELS:
            raise ValueError(f"{width}x{height} exceeds {MAX_PIXELS} pixels")
        image.load()
        return image.convert("RGB")


@dataclass
class _Prepared:
    request: Request
    pixels: np.ndarray | None = None
    error: str | None = None


def _prepare(request: Request, fetch: Callable[[str], bytes], embedder: Embedder) -> _Prepared:
    try:
        data = request.data if request.data is not None else fetch(request.s3_uri or "")
        return _Prepared(request, pixels=embedder.prepare(decode(data)))
    except Exception as exc:  # one bad image is an error line, not a failed batch
        return _Prepared(request, error=f"{type(exc).__name__}: {exc}")


def embed_requests(
    requests: Sequence[Request],
    embedder: Embedder,
    fetch: Callable[[str], bytes],
    batch_size: int = 16,
    workers: int = 2,
) -> list[dict[str, Any]]:
    """One result per request, in request order."""
    return list(_embed_iter(requests, embedder, fetch, batch_size, workers))


def _embed_iter(
    requests: Sequence[Request],
    embedder: Embedder,
    fetch: Callable[[str], bytes],
    batch_size: int,
    workers: int,
) -> Iterator[dict[str, Any]]:
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="prep") as pool:
        pending: deque[Future[_Prepared]] = deque()
        todo = iter(requests)
        lookahead = 2 * batch_size  # decode the next batch while this one runs forward

        def top_up() -> None:
            while len(pending) < lookahead:
                request = next(todo, None)
                if request is None:
                    return
                pending.append(pool.submit(_prepare, request, fetch, embedder))

        top_up()
        while pending:
            batch = [pending.popleft().result() for _ in range(min(batch_size, len(pending)))]
            top_up()
            yield from _forward(batch, embedder)


def _forward(batch: list[_Prepared], embedder: Embedder) -> Iterator[dict[str, Any]]:
    good = [p.pixels for p in batch if p.pixels is not None]
    vectors = iter(embedder.embed_prepared(np.stack(good)) if good else [])
    for prepared in batch:
        if prepared.pixels is None:
            yield {"image_id": prepared.request.image_id, "error": prepared.error}
        else:
            yield {
                "image_id": prepared.request.image_id,
                "embedding": next(vectors).astype(np.float32).tolist(),
                "model_id": embedder.model_id,
            }
