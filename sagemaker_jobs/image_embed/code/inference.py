"""SageMaker inference contract for the image-embedding job (batch transform and endpoints).

Batch transform: JSON Lines in (`{"image_id", "s3_uri"}`), JSON Lines out, one line per input
line in the same order: `{"image_id", "embedding", "model_id"}` or `{"image_id", "error"}`.
Endpoints (single-image mode): a raw image body (image/jpeg, image/png, ...) in, one JSON
object out.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

try:
    from .batch import Request, embed_requests, parse_json_lines, start_pool
    from .embedders import Embedder, load_embedder, read_model_card
    from .prep_pool import PreparationPool
except ImportError:  # SageMaker imports code/ modules top-level
    from batch import (  # type: ignore[no-redef]
        Request,
        embed_requests,
        parse_json_lines,
        start_pool,
    )
    from embedders import Embedder, load_embedder, read_model_card  # type: ignore[no-redef]
    from prep_pool import PreparationPool  # type: ignore[no-redef]

PREPARATION_MODES = ("processes", "threads")
JSON_LINES = ("application/jsonlines", "application/x-jsonlines", "application/jsonl")
IMAGE_TYPES = ("image/jpeg", "image/png", "image/bmp", "image/webp", "application/x-image")


class UnsupportedContentType(ValueError):
    """Refused content type: the job fails with this message instead of guessing."""


@dataclass
class EmbeddingModel:
    embedder: Embedder
    card: dict[str, Any]
    batch_size: int = 16
    workers: int = 2
    pool: PreparationPool | None = field(default=None, repr=False)
    _s3: Any = field(default=None, repr=False)

    def fetch(self, uri: str) -> bytes:
        """Read an s3:// object (the container's AWS_ENDPOINT_URL_S3 applies, if set)."""
        parts = urlsplit(uri)
        if parts.scheme != "s3" or not parts.netloc:
            raise ValueError(f"not an s3:// URI: {uri!r}")
        if self._s3 is None:
            import boto3

            self._s3 = boto3.client("s3")
        response = self._s3.get_object(Bucket=parts.netloc, Key=parts.path.lstrip("/"))
        return response["Body"].read()


MAX_DEFAULT_WORKERS = 8


def default_workers(processes: bool = False) -> int:
    """Preparation workers of this model-server worker: the cores the process may use, shared
    among the container's workers (SAGEMAKER_TS_MAX_WORKERS: one per GPU). Threads stop at 8:
    beyond that they contend for the one GIL (docs/performance.md); processes have one each."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    server_workers = max(1, int(os.environ.get("SAGEMAKER_TS_MAX_WORKERS", "1")))
    share = max(1, (usable or 1) // server_workers)
    return share if processes else min(share, MAX_DEFAULT_WORKERS)


def preparation_mode() -> str:
    """IMGSIM_PREPARATION: `processes` (the default) or `threads` (the baseline)."""
    mode = os.environ.get("IMGSIM_PREPARATION", "processes").strip().lower()
    if mode not in PREPARATION_MODES:
        raise ValueError(f"IMGSIM_PREPARATION={mode!r}: use one of {', '.join(PREPARATION_MODES)}")
    return mode


def worker_device(context: Any, cuda_available: bool) -> str | None:
    """The GPU TorchServe gave this worker (its context's gpu_id, one per worker in turn), or
    None for the embedder's own choice (the CPU, or the only GPU)."""
    properties = getattr(context, "system_properties", None) or {}
    gpu_id = properties.get("gpu_id")
    return f"cuda:{int(gpu_id)}" if cuda_available and gpu_id is not None else None


def model_fn(model_dir: str, context: Any = None) -> EmbeddingModel:
    """Load once per model-server worker: the embedder named by the model directory's card, on
    the worker's GPU, and its preparation processes (spawned, so after CUDA is safe)."""
    threads = int(os.environ.get("IMGSIM_TORCH_THREADS", "0")) or None
    precision = os.environ.get("IMGSIM_PRECISION", "fp32")
    processes = preparation_mode() == "processes"
    device = worker_device(context, _cuda_available()) if context is not None else None
    embedder = load_embedder(Path(model_dir), threads=threads, precision=precision, device=device)
    batch_size = int(os.environ.get("IMGSIM_BATCH_SIZE", "16"))
    workers = int(os.environ.get("IMGSIM_DECODE_WORKERS", "0")) or default_workers(processes)
    stall_s = float(os.environ.get("IMGSIM_PREPARATION_STALL_SECONDS", "300"))
    return EmbeddingModel(
        embedder=embedder,
        card=read_model_card(Path(model_dir)),
        batch_size=batch_size,
        workers=workers,
        pool=start_pool(embedder, workers, batch_size, stall_s) if processes else None,
    )


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:  # a family served without torch
        return False
    return bool(torch.cuda.is_available())


def _base_type(content_type: str | None) -> str:
    return (content_type or "").split(";")[0].strip().lower()


def input_fn(
    request_body: bytes | str, request_content_type: str, context: Any = None
) -> list[Request]:
    content_type = _base_type(request_content_type)
    if content_type in JSON_LINES:
        return parse_json_lines(request_body)
    if content_type in IMAGE_TYPES:
        data = request_body if isinstance(request_body, bytes) else request_body.encode("latin-1")
        return [Request(image_id=None, data=data)]
    raise UnsupportedContentType(
        f"content type {request_content_type!r} is not supported; send application/jsonlines "
        f"(batch) or an image type ({', '.join(IMAGE_TYPES)})"
    )


def predict_fn(
    input_data: list[Request], model: EmbeddingModel, context: Any = None
) -> list[dict[str, Any]]:
    """One image (an endpoint's request) is prepared here; a batch by the preparation pool."""
    pool = model.pool if len(input_data) > 1 else None
    return embed_requests(
        input_data, model.embedder, model.fetch, model.batch_size, model.workers, pool=pool
    )


def output_fn(prediction: list[dict[str, Any]], accept: str | None, context: Any = None) -> str:
    accept_type = _base_type(accept) or "application/jsonlines"
    if accept_type in JSON_LINES or accept_type == "*/*":
        return "".join(json.dumps(p) + "\n" for p in prediction)
    if accept_type == "application/json":
        return json.dumps(prediction[0] if len(prediction) == 1 else prediction)
    raise UnsupportedContentType(f"accept type {accept!r} is not supported")
