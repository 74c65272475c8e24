"""The gallery's API for the browser tests: the module's stack holding the sample photos and
variations of them (and copies of a few under smaller prompts, tests/browser/gallery_data.py),
each embedded by the tiny random-init CLIP that the SageMaker emulator's
endpoint serves (the same endpoint the page's photo queries go through), and the Bedrock
emulator for the page's "Generate"."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace

import pytest
import requests
from playwright.sync_api import Browser

from lambdas.api.handler import make_handler
from pipeline import aws
from pipeline.ingest.ingestor import Ingestor
from pipeline.local.api_gateway import LocalApi
from pipeline.local.bedrock.server import BedrockEmulator, Behaviour
from pipeline.local.embed_endpoint import ensure_endpoint
from pipeline.settings import Settings
from tests.browser.gallery_data import MODEL, PROMPT, SMALL_PROMPTS, photos, small_prompt_ids
from tests.browser.gallery_page import chromium
from tests.helpers import commit_shard, embedded_records


@dataclass
class GalleryApi:
    url: str
    settings: Settings
    image_ids: list[str]


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
        for prompt in SMALL_PROMPTS:  # copies of some photos under smaller prompts
            copies = small_prompt_ids(prompt)
            for image_id, source in copies.items():
                s3.put_object(
                    Bucket=settings.bucket,
                    Key=f"uploads/{image_id}.jpg",
                    Body=images[source],
                    ContentType="image/jpeg",
                )
            commit_shard(
                settings, prompt, MODEL, "run-1", {i: vectors[s] for i, s in copies.items()}
            )
            embedded_records(settings, copies, prompt)
        yield GalleryApi(server.url, settings, list(images))
    finally:
        server.stop()
        bedrock.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched
