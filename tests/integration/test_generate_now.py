"""GET /images?prompt=P: one image generated now through the Bedrock emulator, stored under
generated/, recorded with its generation metadata and queued for embedding."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest
import requests

from lambdas.api.handler import make_handler
from pipeline import aws
from pipeline.generation.families import DEFAULT_IMAGE_MODEL
from pipeline.ingest.ingestor import Ingestor
from pipeline.local.api_gateway import LocalApi
from pipeline.local.bedrock.server import BedrockEmulator, Behaviour
from pipeline.storage.images_table import ImageStore
from tests.helpers import drain_messages


@pytest.fixture
def api(stack):
    servers = []

    def start(**behaviour):
        bedrock = BedrockEmulator(Behaviour(**behaviour)).start()
        settings = stack.settings.with_endpoint(bedrock.url, ("bedrock-runtime",))
        api = LocalApi(make_handler(Ingestor.from_settings(settings))).start()
        servers.extend([bedrock, api])
        return api.url, settings

    yield start
    for server in servers:
        server.stop()


def test_generate_now_stores_records_and_queues(api):
    url, settings = api()
    response = requests.get(f"{url}/images", params={"prompt": "  A Red  Fox "}, timeout=60)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["base_prompt"] == "a red fox"
    assert body["modified_prompt"].startswith("a red fox, ")
    record = ImageStore(settings).get(body["image_id"])
    assert record["source"] == "generated" and record["status"] == "pending"
    assert record["s3_key"] == f"generated/{body['image_id']}.png"
    assert record["prompt"] == "a red fox" and record["modified_prompt"] == body["modified_prompt"]
    generation = record["generation"]
    assert generation["model_id"] == DEFAULT_IMAGE_MODEL  # one AWS lists as Active
    assert generation["seed"] == body["seed"]
    assert set(generation["modifiers"]) == {"camera_angle", "style", "seed"}
    assert (record["width"], record["height"]) == (512, 512)
    head = aws.client(settings, "s3").head_object(Bucket=settings.bucket, Key=record["s3_key"])
    assert head["ContentType"] == "image/png"
    assert [m["image_id"] for m in drain_messages(settings, settings.embed_queue)] == [
        body["image_id"]
    ]


@pytest.mark.parametrize("params", [{}, {"prompt": "   "}, {"prompt": "x" * 1001}])
def test_bad_prompts_are_400(api, params):
    url, _ = api()
    response = requests.get(f"{url}/images", params=params, timeout=30)
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_prompt"


def test_throttled_after_retries_is_429(api, stack):
    url, _ = api(throttle_rate=1.0)
    response = requests.get(f"{url}/images", params={"prompt": "a fork"}, timeout=120)
    assert response.status_code == 429 and response.json()["error"]["code"] == "throttled"


def test_a_refusal_is_502_with_the_reason_and_stores_nothing(api):
    url, settings = api()
    response = requests.get(f"{url}/images", params={"prompt": "something forbidden"}, timeout=60)
    assert response.status_code == 502
    assert "filter" in response.json()["error"]["message"].lower()
    listed = aws.client(settings, "s3").list_objects_v2(Bucket=settings.bucket, Prefix="generated/")
    assert listed.get("KeyCount") == 0


def test_other_models_are_configurable(api, stack):
    _, settings = api()
    other = replace(settings, image_model_id="stability.sd3-5-large-v1:0")
    server = LocalApi(make_handler(Ingestor.from_settings(other))).start()
    try:
        body = requests.get(f"{server.url}/images", params={"prompt": "an owl"}, timeout=60)
    finally:
        server.stop()
    assert body.status_code == 200 and body.json()["model_id"] == "stability.sd3-5-large-v1:0"


def test_a_retry_with_the_same_idempotency_key_calls_bedrock_once(stack):
    behaviour = Behaviour()
    bedrock = BedrockEmulator(behaviour).start()
    settings = stack.settings.with_endpoint(bedrock.url, ("bedrock-runtime",))
    server = LocalApi(make_handler(Ingestor.from_settings(settings))).start()
    s3 = aws.client(settings, "s3")

    def generated() -> int:
        listed = s3.list_objects_v2(Bucket=settings.bucket, Prefix="generated/")
        return listed.get("KeyCount", 0)

    try:
        url, key = f"{server.url}/images", {"Idempotency-Key": "gen-1"}
        first = requests.get(url, params={"prompt": "a red fox"}, headers=key, timeout=60)
        retry = requests.get(url, params={"prompt": "a red fox"}, headers=key, timeout=60)
        assert first.status_code == retry.status_code == 200
        assert retry.json() == first.json()
        assert (behaviour.calls, generated()) == (1, 1)

        other = requests.get(url, params={"prompt": "an owl"}, headers=key, timeout=60)
        assert other.status_code == 422
        assert other.json()["error"]["code"] == "idempotency_key_reused"
        assert (behaviour.calls, generated()) == (1, 1)

        fresh = requests.get(url, params={"prompt": "a red fox"}, timeout=60)  # no key
        assert fresh.status_code == 200 and fresh.json()["image_id"] != first.json()["image_id"]
        assert (behaviour.calls, generated()) == (2, 2)
    finally:
        server.stop()
        bedrock.stop()


def test_a_model_past_its_end_of_life_is_502_with_the_reason(api, stack):
    _, settings = api()
    legacy = replace(settings, image_model_id="amazon.titan-image-generator-v2:0")
    server = LocalApi(make_handler(Ingestor.from_settings(legacy))).start()
    try:
        response = requests.get(f"{server.url}/images", params={"prompt": "an owl"}, timeout=60)
    finally:
        server.stop()
    error = response.json()["error"]
    assert response.status_code == 502 and error["code"] == "model_unavailable"
    assert "end of life on 2026-06-30" in error["message"]


def test_a_prompt_too_long_for_titan_is_400_before_any_call(stack):
    behaviour = Behaviour(today=date(2026, 1, 1))  # before Titan v2's end of life
    bedrock = BedrockEmulator(behaviour).start()
    settings = replace(
        stack.settings.with_endpoint(bedrock.url, ("bedrock-runtime",)),
        image_model_id="amazon.titan-image-generator-v2:0",
    )
    server = LocalApi(make_handler(Ingestor.from_settings(settings))).start()
    try:
        response = requests.get(f"{server.url}/images", params={"prompt": "x" * 500}, timeout=60)
    finally:
        server.stop()
        bedrock.stop()
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_prompt"
    assert "amazon.titan-image-generator-v2:0" in response.json()["error"]["message"]
    assert behaviour.calls == 0
