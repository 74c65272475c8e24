"""The gallery's API for the browser tests: the module's stack holding the sample photos and
variations of them, each embedded by the tiny random-init CLIP that the SageMaker emulator's
endpoint serves (the same endpoint the page's photo queries go through), and the Bedrock
emulator for the page's "Generate"."""

from __future__ import annotations

import base64
import io
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace

import pytest
import requests
from PIL import Image, ImageOps
from playwright.sync_api import Browser

from lambdas.api.handler import make_handler
from pipeline import aws
from pipeline.ingest.ingestor import Ingestor
from pipeline.local.api_gateway import LocalApi
from pipeline.local.bedrock.server import BedrockEmulator, Behaviour
from pipeline.local.demo import SAMPLES
from pipeline.local.embed_endpoint import ensure_endpoint
from pipeline.settings import Settings
from tests.browser.gallery_page import chromium
from tests.helpers import commit_shard, embedded_records

PROMPT = "sample photos"
MODEL = "clip-tiny-random-init-seed0"  # the tiny artifact's model id: random weights


@dataclass
class GalleryApi:
    url: str
    settings: Settings
    image_ids: list[str]


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=88)
    return buffer.getvalue()


def photos() -> dict[str, bytes]:
    """Each sample photo, a centre crop of it and a mirrored, darker copy (12 images)."""
    made = {}
    for path in sorted(SAMPLES.glob("*.*g")):
        with Image.open(path) as image:
            image.load()
        small = ImageOps.contain(image, (256, 256))
        made[path.stem] = _jpeg(small)
        made[f"{path.stem}-crop"] = _jpeg(ImageOps.fit(small, (160, 160), centering=(0.5, 0.4)))
        made[f"{path.stem}-mirror"] = _jpeg(ImageOps.mirror(small).point(lambda v: int(v * 0.8)))
    return made


def _embed(api_url: str, data: bytes) -> list[float]:
    body = {"img": base64.b64encode(data).decode()}
    response = requests.post(f"{api_url}/embed", json=body, timeout=120)
    assert response.status_code == 200, response.text
    return response.json()["embedding"]


@pytest.fixture(scope="module")
def gallery_api(module_stack, sagemaker_emulator, tiny_clip_artifact) -> Iterator[GalleryApi]:
    bedrock = BedrockEmulator(Behaviour()).start()
    settings = (
        replace(module_stack.settings, embed_endpoint=f"embed-{uuid.uuid4().hex[:8]}")
        .with_endpoint(sagemaker_emulator, ("sagemaker", "sagemaker-runtime"))
        .with_endpoint(bedrock.url, ("bedrock-runtime",))
    )
    s3 = aws.client(settings, "s3")
    s3.upload_file(str(tiny_clip_artifact), settings.bucket, "models/tiny.tar.gz")
    ensure_endpoint(settings, f"s3://{settings.bucket}/models/tiny.tar.gz")
    server = LocalApi(make_handler(Ingestor.from_settings(settings))).start()
    try:
        images = photos()
        for image_id, data in images.items():
            s3.put_object(
                Bucket=settings.bucket,
                Key=f"uploads/{image_id}.jpg",
                Body=data,
                ContentType="image/jpeg",
            )
        vectors = {i: _embed(server.url, data) for i, data in images.items()}
        commit_shard(settings, PROMPT, MODEL, "run-1", vectors)
        embedded_records(settings, images, PROMPT)
        yield GalleryApi(server.url, settings, list(images))
    finally:
        server.stop()
        bedrock.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched
