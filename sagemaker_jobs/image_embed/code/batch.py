"""Batch execution: fetch, decode and preprocess images while the model runs forward passes on
the previous batch. One bad image yields an error line, never a failed batch; a preparation
process that dies (killed for memory, a crash in a native decoder) fails the request, and the
next request starts the processes afresh.

Preparation runs in worker processes (`prep_pool`: the batch job's default, not bound by one
GIL) writing into shared batch buffers the model reads in place, or in threads of this process
(one image per call, an embedder without a portable preparation, or IMGSIM_PREPARATION=threads).
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
    from .prep_pool import STALL_S, PreparationPool
except ImportError:  # SageMaker imports code/ modules top-level
    from embedders import Embedder  # type: ignore[no-redef]
    from prep_pool import STALL_S, PreparationPool  # type: ignore[no-redef]

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


@dataclass(frozen=True)
class PrepareBytes:
    """What a preparation process runs for one image: decode, then the embedder's portable
    preparation (picklable: it carries no model)."""

    prepare: Callable[[Image.Image], np.ndarray]

    def __call__(self, data: bytes) -> np.ndarray:
        return np.asarray(self.prepare(decode(data)))


def start_pool(
    embedder: Embedder, workers: int, capacity: int, stall_s: float = STALL_S
) -> PreparationPool | None:
    """Worker processes preparing `capacity`-image batches for `embedder`, or None where its
    preparation cannot leave this process (the caller keeps threads)."""
    portable = embedder.portable_prepare()
    if portable is None:
        return None
    probe = np.asarray(portable(Image.new("RGB", (64, 48), (128, 128, 128))))
    return PreparationPool(
        PrepareBytes(portable), probe, workers=workers, capacity=capacity, stall_s=stall_s
    )


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
    pool: PreparationPool | None = None,
) -> list[dict[str, Any]]:
    """One result per request, in request order; prepared by `pool` (its batch size) if given,
    else by `workers` threads."""
    if pool is not None:
        return list(_embed_pool(requests, embedder, fetch, pool, io_threads=max(4, workers)))
    return list(_embed_iter(requests, embedder, fetch, batch_size, workers))


def _embed_pool(
    requests: Sequence[Request],
    embedder: Embedder,
    fetch: Callable[[str], bytes],
    pool: PreparationPool,
    io_threads: int,
) -> Iterator[dict[str, Any]]:
    def load(index: int) -> bytes:
        request = requests[index]
        return request.data if request.data is not None else fetch(request.s3_uri or "")

    start = 0
    for batch, errors in pool.batches(len(requests), load, io_threads):
        chunk, start = requests[start : start + len(batch)], start + len(batch)
        # The ring's view goes to the model as it is; only a batch with failed rows is
        # compacted (a copy) so that no garbage row reaches the forward pass.
        good = batch if not errors else batch[[i for i in range(len(batch)) if i not in errors]]
        vectors = iter(embedder.embed_prepared(good) if len(good) else [])
        for pos, request in enumerate(chunk):
            if pos in errors:
                yield {"image_id": request.image_id, "error": errors[pos]}
            else:
                yield _embedding(request, next(vectors), embedder)


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
            yield _embedding(prepared.request, next(vectors), embedder)


def _embedding(request: Request, vector: np.ndarray, embedder: Embedder) -> dict[str, Any]:
    return {
        "image_id": request.image_id,
        "embedding": vector.astype(np.float32).tolist(),
        "model_id": embedder.model_id,
    }
