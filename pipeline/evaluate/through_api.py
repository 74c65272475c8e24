"""The same evaluation through a running stack: the index images are dropped into the bucket
under one prompt (as a user would upload them), the pipeline embeds them, and each query image
is sent to `POST /similarity`. Equal figures to the in-process mode mean nothing is lost on the
way (ingest, batch transform, shards, lookup)."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import requests

from pipeline import aws
from pipeline.settings import Settings

Progress = Callable[[int], None]
QUERY_BATCH = 8  # POST /similarity takes at most 8 images per request


class EvaluationError(RuntimeError):
    """The stack did not embed or answer what the evaluation needs."""


def _extension(data: bytes) -> str:
    return ".jpg" if data[:3] == b"\xff\xd8\xff" else ".png"


@dataclass
class ApiRun:
    api_url: str
    settings: Settings
    prompt: str
    timeout_s: float = 1800
    session: requests.Session | None = None

    def __post_init__(self) -> None:
        self.http = self.session or requests.Session()

    def upload(self, ids: list[str], images: list[bytes], progress: Progress | None) -> None:
        s3 = aws.client(self.settings, "s3")

        def put(item: tuple[str, bytes]) -> None:
            s3.put_object(
                Bucket=self.settings.bucket,
                Key=f"{self.settings.upload_prefix}{item[0]}{_extension(item[1])}",
                Body=item[1],
                Metadata={"prompt": self.prompt},
            )
            if progress:
                progress(1)

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(put, zip(ids, images, strict=True)))

    def status(self, image_id: str) -> str:
        response = self.http.get(f"{self.api_url}/images/{image_id}", timeout=30)
        return response.json().get("status", "missing") if response.ok else "missing"

    def wait_embedded(self, ids: list[str], progress: Progress | None) -> None:
        """Walk the ids in order, waiting on each until the pipeline has embedded it."""
        deadline = time.monotonic() + self.timeout_s
        for image_id in ids:
            while (state := self.status(image_id)) != "embedded":
                if state == "failed" or time.monotonic() > deadline:
                    raise EvaluationError(f"image {image_id} is {state}, not embedded")
                time.sleep(1)
            if progress:
                progress(1)

    def query(self, images: list[bytes], progress: Progress | None) -> tuple[str, list[list[str]]]:
        """(model_id, each image's top-10 image ids)."""
        ranked: list[list[str]] = []
        model_id = ""
        for start in range(0, len(images), QUERY_BATCH):
            batch = images[start : start + QUERY_BATCH]
            response = self.http.post(
                f"{self.api_url}/similarity",
                json={
                    "prompt": self.prompt,
                    "k": 10,
                    "images": [base64.b64encode(b).decode() for b in batch],
                },
                timeout=300,
            )
            if not response.ok:
                raise EvaluationError(f"POST /similarity: {response.status_code} {response.text}")
            body: dict[str, Any] = response.json()
            ranked += [[r["image_id"] for r in q["results"]] for q in body["queries"]]
            model_id = body["queries"][0]["model_id"]
            if progress:
                progress(len(batch))
        return model_id, ranked


def ranked_ids(
    run: ApiRun,
    index_images: list[bytes],
    index_ids: list[str],
    query_images: list[bytes],
    progress: Progress | None = None,
) -> tuple[str, list[list[str]]]:
    """(model_id, each query's top-10 index ids) as the running stack answers them."""
    run.upload(index_ids, index_images, progress)
    run.wait_embedded(index_ids, progress)
    return run.query(query_images, progress)
