"""The Bedrock client against the Bedrock emulator, through boto3's bedrock-runtime and bedrock
clients and an endpoint URL: the same code path as on AWS."""

from __future__ import annotations

import io
import json
import time
import urllib.error
import urllib.request
from dataclasses import replace
from datetime import date
from types import SimpleNamespace

import botocore.endpoint
import numpy as np
import pytest
from PIL import Image

from pipeline import aws
from pipeline.generation.bedrock import (
    API_BUDGET,
    BedrockImages,
    ModelUnavailable,
    OutOfRange,
    Refused,
    RetryBudget,
    Throttled,
    TimedOut,
    request_body,
)
from pipeline.generation.budget import LIFECYCLE_BUDGET
from pipeline.generation.families import DEFAULT_IMAGE_MODEL
from pipeline.generation.model_status import control_plane
from pipeline.local.bedrock.catalogue import Access
from pipeline.local.bedrock.server import BedrockEmulator, Behaviour
from pipeline.settings import Settings
from sagemaker_jobs.image_embed.code.embedders import ColorLayoutEmbedder

TITAN = "amazon.titan-image-generator-v2:0"
NOVA = "amazon.nova-canvas-v1:0"
# Nova Canvas is not served in us-west-2 (the default Bedrock region, the Stability models'):
# its tests ask in us-east-1.
BEDROCK_REGION = {NOVA: "us-east-1"}
# A date before Titan v2's and Nova Canvas's end of life, so their request shapes stay tested.
BEFORE_EOL = date(2026, 1, 1)
AFTER_EOL = date(2026, 11, 22)


@pytest.fixture
def backoff(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The waits botocore's retry handler asked for, recorded instead of slept: botocore
    sleeps between attempts in botocore.endpoint, through its module's `time`."""
    waits: list[float] = []
    monkeypatch.setattr(botocore.endpoint, "time", SimpleNamespace(sleep=waits.append))
    return waits


@pytest.fixture
def emulator(backoff):
    servers = []

    def start(
        max_attempts: int = 6,
        today: date = BEFORE_EOL,
        budget: RetryBudget | None = None,
        model_id: str = "",
        **behaviour,
    ) -> tuple[BedrockImages, Behaviour]:
        server = BedrockEmulator(Behaviour(today=today, **behaviour)).start()
        servers.append(server)
        region = BEDROCK_REGION.get(model_id, Settings.bedrock_region)
        settings = Settings(bedrock_region=region).with_endpoint(server.url, ("bedrock-runtime",))
        budget = budget or RetryBudget(max_attempts, connect_timeout=2, read_timeout=10)
        return BedrockImages(settings, budget=budget, today=today), server.behaviour

    yield start
    for server in servers:
        server.stop()


def _vector(png: bytes) -> np.ndarray:
    embedder = ColorLayoutEmbedder()
    return embedder.embed(embedder.preprocess(Image.open(io.BytesIO(png)))[None])[0]


@pytest.mark.parametrize(
    "model_id", [TITAN, NOVA, "stability.sd3-5-large-v1:0", DEFAULT_IMAGE_MODEL]
)
def test_each_family_returns_a_png_named_as_a_stand_in(emulator, model_id):
    client, _ = emulator(model_id=model_id)
    result = client.generate(model_id, "a red fox, close-up, watercolor painting", 512, 512, 7)
    image = Image.open(io.BytesIO(result.image))
    assert image.format == "PNG" and image.size == (512, 512)
    assert "stand-in" in image.info["Software"]
    assert result.attempts == 1 and result.seed == 7


def test_pictures_depend_on_the_base_prompt_and_modifiers(emulator):
    client, _ = emulator()

    def png(prompt: str, seed: int = 1) -> bytes:
        return client.generate(TITAN, prompt, 512, 512, seed).image

    fox_a, fox_b = png("a red fox", 1), png("a red fox", 2)
    cup = png("a cup of coffee", 1)
    assert fox_a == png("a red fox", 1)  # deterministic
    assert _vector(fox_a) @ _vector(fox_b) > _vector(fox_a) @ _vector(cup)  # related
    for modifier in (
        "a red fox, close-up",
        "a red fox, pencil sketch",
        "a red fox, dutch angle, pixel art",
    ):
        changed = np.asarray(Image.open(io.BytesIO(png(modifier, 1))), np.float32)
        plain = np.asarray(Image.open(io.BytesIO(fox_a)), np.float32)
        assert np.abs(changed - plain).mean() > 5, modifier  # visibly different


def test_throttling_is_retried_by_botocore_with_backoff(emulator, backoff):
    client, behaviour = emulator(throttle_rate=0.6, seed=3)
    results = [client.generate(TITAN, "a fork", 512, 512, s) for s in range(5)]
    assert any(r.attempts > 1 for r in results)
    # attempts comes from botocore's own count: every call the emulator saw is accounted for
    assert behaviour.calls == sum(r.attempts for r in results)
    assert len(backoff) == behaviour.calls - len(results)  # one wait before each retry
    assert all(0 <= w <= 20 for w in backoff)


def test_throttled_after_every_retry_says_so(emulator, backoff):
    client, behaviour = emulator(throttle_rate=1.0, max_attempts=4)
    with pytest.raises(Throttled, match="ThrottlingException after 4 calls"):
        client.generate(TITAN, "a fork", 512, 512, 1)
    assert behaviour.calls == 4 and len(backoff) == 3
    # exponential caps (1, 2, 4 s), full jitter below them
    assert all(0 <= wait <= 2**i for i, wait in enumerate(backoff))


def test_a_model_timeout_is_answered_at_once(emulator, backoff):
    """botocore does not retry ModelTimeoutException (408): Throttled after one call."""
    client, behaviour = emulator(fault=("ModelTimeoutException", 408))
    with pytest.raises(Throttled, match="ModelTimeoutException after 1 calls"):
        client.generate(TITAN, "a fork", 512, 512, 1)
    assert behaviour.calls == 1 and backoff == []


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("ServiceUnavailableException", 503),
        ("InternalServerException", 500),
        ("ModelNotReadyException", 429),
    ],
)
def test_unavailable_models_are_retried_then_throttled(emulator, backoff, code, status):
    client, behaviour = emulator(fault=(code, status), max_attempts=3)
    with pytest.raises(Throttled, match=f"{code} after 3 calls"):
        client.generate(TITAN, "a fork", 512, 512, 1)
    assert behaviour.calls == 3 and len(backoff) == 2


@pytest.mark.parametrize("model_id", [TITAN, "stability.stable-image-ultra-v1:1"])
def test_a_refusal_is_not_retried_and_keeps_its_reason(emulator, backoff, model_id):
    client, behaviour = emulator()
    with pytest.raises(Refused) as refused:
        client.generate(model_id, "something forbidden", 512, 512, 1)
    assert behaviour.calls == 1 and ("filter" in str(refused.value).lower())
    assert backoff == []


def test_a_fraction_of_calls_can_be_refused(emulator):
    client, _ = emulator(refuse_rate=0.5, seed=1)
    outcomes = []
    for seed in range(20):
        try:
            client.generate(TITAN, "a fork", 512, 512, seed)
            outcomes.append("ok")
        except Refused:
            outcomes.append("refused")
    assert 3 <= outcomes.count("refused") <= 17


def test_invalid_sizes_are_validation_errors(emulator):
    client, _ = emulator()
    with pytest.raises(client.client.exceptions.ValidationException):
        client.generate(TITAN, "a fork", 500, 512, 1)


@pytest.mark.parametrize(
    ("model_id", "seed", "prompt_chars"),
    [(NOVA, 858_993_460, 10), (TITAN, 2**31 - 1, 10), (TITAN, 1, 513), (NOVA, 1, 1025)],
)
def test_each_familys_limits_are_enforced_by_the_emulator(emulator, model_id, seed, prompt_chars):
    """The client refuses out-of-range input before a call; the emulator refuses it the way
    Bedrock does, so a regression in either is caught."""
    client, behaviour = emulator(model_id=model_id)
    with pytest.raises(OutOfRange):
        client.generate(model_id, "x" * prompt_chars, 512, 512, seed)
    assert behaviour.calls == 0
    raw = client.client
    body = request_body(model_id, "x" * prompt_chars, 512, 512, seed)
    with pytest.raises(raw.exceptions.ValidationException, match="Malformed input request"):
        raw.invoke_model(modelId=model_id, body=json.dumps(body))


def test_get_foundation_model_answers_each_models_lifecycle(emulator):
    client, _ = emulator()
    control = aws.client(control_plane(client.settings), "bedrock")
    titan = control.get_foundation_model(modelIdentifier=TITAN)["modelDetails"]
    assert titan["modelLifecycle"]["status"] == "LEGACY"
    assert titan["modelLifecycle"]["endOfLifeTime"].date() == date(2026, 6, 30)
    assert "stand-in" in titan["modelName"]
    core = control.get_foundation_model(modelIdentifier=DEFAULT_IMAGE_MODEL)["modelDetails"]
    assert core["modelLifecycle"] == {"status": "ACTIVE"}
    with pytest.raises(control.exceptions.ResourceNotFoundException):
        control.get_foundation_model(modelIdentifier="stability.no-such-model-v9:0")


def test_a_legacy_model_is_a_warning_and_an_active_one_is_not(emulator, caplog):
    client, _ = emulator(today=BEFORE_EOL)
    with caplog.at_level("INFO", logger="pipeline.generation.model_status"):
        client.generate(TITAN, "a fork", 512, 512, 1)
        client.generate(DEFAULT_IMAGE_MODEL, "a fork", 512, 512, 1)
    legacy, active = caplog.records
    assert legacy.levelname == "WARNING" and "Legacy" in legacy.message
    assert "end of life on 2026-06-30" in legacy.message
    assert active.levelname == "INFO" and "Active" in active.message
    assert "aws-marketplace:Subscribe" in active.message  # a Stability model says so


def test_a_model_past_its_end_of_life_is_refused_before_any_call(emulator):
    client, behaviour = emulator(today=AFTER_EOL)
    with pytest.raises(ModelUnavailable, match="end of life on 2026-06-30"):
        client.generate(TITAN, "a fork", 512, 512, 1)
    with pytest.raises(ModelUnavailable, match="not offered by Bedrock"):
        client.generate("stability.no-such-model-v9:0", "a fork", 512, 512, 1)
    assert behaviour.calls == 0
    # the emulator itself refuses the call, as Bedrock does after the end of life
    body = json.dumps(request_body(TITAN, "a fork", 512, 512, 1))
    with pytest.raises(client.client.exceptions.ValidationException, match="end of its life"):
        client.client.invoke_model(modelId=TITAN, body=body)


def test_a_slow_model_fails_within_the_retry_budget(emulator):
    budget = RetryBudget(attempts=2, connect_timeout=1, read_timeout=0.5)
    client, behaviour = emulator(budget=budget, latency_seconds=2)
    client.check(DEFAULT_IMAGE_MODEL)
    started = time.monotonic()
    with pytest.raises(TimedOut, match=r"2 calls of 0\.5 s"):
        client.generate(DEFAULT_IMAGE_MODEL, "a fork", 512, 512, 1)
    elapsed = time.monotonic() - started
    assert behaviour.calls == 2
    assert elapsed <= budget.worst_case_seconds()


def test_the_api_budget_fits_inside_api_gateways_29_seconds():
    # a container's first generation: the lifecycle check, then the calls; 3 s left to store
    # and record the image
    assert LIFECYCLE_BUDGET.worst_case_seconds() + API_BUDGET.worst_case_seconds() <= 26


def test_an_unreachable_control_plane_is_a_warning_not_a_failure(emulator, caplog):
    client, behaviour = emulator()
    client.settings = client.settings.with_endpoint("http://127.0.0.1:9", ("bedrock",))
    with caplog.at_level("WARNING", logger="pipeline.generation.model_status"):
        result = client.generate(DEFAULT_IMAGE_MODEL, "a fork", 512, 512, 1)
    assert result.image and behaviour.calls == 1
    assert "cannot check" in caplog.text
    assert client.check(DEFAULT_IMAGE_MODEL) is None  # not remembered: asked again next time


def test_a_model_the_bedrock_region_does_not_serve_is_unavailable_before_any_call(emulator):
    """Nova Canvas asked in us-west-2: the lifecycle check says so and names the setting to
    change; the emulator refuses both APIs there as Bedrock does."""
    client, behaviour = emulator()  # us-west-2
    with pytest.raises(ModelUnavailable, match="not offered by Bedrock in us-west-2") as gone:
        client.generate(NOVA, "a fork", 512, 512, 1)
    assert "IMGSIM_BEDROCK_REGION" in str(gone.value) and behaviour.calls == 0
    body = json.dumps(request_body(NOVA, "a fork", 512, 512, 1))
    with pytest.raises(client.client.exceptions.ValidationException, match="model identifier"):
        client.client.invoke_model(modelId=NOVA, body=body)
    control = aws.client(control_plane(client.settings), "bedrock")
    with pytest.raises(control.exceptions.ValidationException, match="model identifier"):
        control.get_foundation_model(modelIdentifier=NOVA)


def test_an_invoke_refused_for_the_region_is_model_unavailable(emulator):
    """When the lifecycle check could not be had, InvokeModel's own refusal says the same."""
    client, _ = emulator()
    client.settings = client.settings.with_endpoint("http://127.0.0.1:9", ("bedrock",))
    with pytest.raises(ModelUnavailable, match="not offered by Bedrock in us-west-2"):
        client.generate(NOVA, "a fork", 512, 512, 1)


def test_the_emulator_answers_for_the_region_a_request_is_signed_for(emulator):
    client, _ = emulator()
    west = aws.client(control_plane(client.settings), "bedrock")
    east = aws.client(
        replace(control_plane(client.settings), bedrock_region="us-east-1"), "bedrock"
    )
    assert east.meta.region_name == "us-east-1" and west.meta.region_name == "us-west-2"
    core = west.get_foundation_model(modelIdentifier=DEFAULT_IMAGE_MODEL)["modelDetails"]
    assert core["modelArn"].startswith("arn:aws:bedrock:us-west-2::")
    with pytest.raises(east.exceptions.ValidationException, match="model identifier is invalid"):
        east.get_foundation_model(modelIdentifier=DEFAULT_IMAGE_MODEL)
    assert east.get_foundation_model(modelIdentifier=TITAN)["modelDetails"]  # served in both


def test_an_unsigned_request_is_answered_for_the_emulators_own_region():
    server = BedrockEmulator(Behaviour(region="us-east-1")).start()
    try:
        url = f"{server.url}/foundation-models/{DEFAULT_IMAGE_MODEL}"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url, timeout=5)
        assert refused.value.code == 400
        assert refused.value.headers["x-amzn-ErrorType"].startswith("ValidationException")
    finally:
        server.stop()


def test_get_foundation_model_availability_speaks_bedrocks_protocol(emulator):
    client, _ = emulator(access=Access(agreement="NOT_AVAILABLE", entitled=False))
    control = aws.client(control_plane(client.settings), "bedrock")
    answer = control.get_foundation_model_availability(modelId=DEFAULT_IMAGE_MODEL)
    assert answer["agreementAvailability"] == {"status": "NOT_AVAILABLE"}
    assert answer["authorizationStatus"] == "AUTHORIZED"
    assert answer["entitlementAvailability"] == "NOT_AVAILABLE"
    assert answer["regionAvailability"] == "AVAILABLE"
    assert control.get_foundation_model_availability(modelId=NOVA)["regionAvailability"] == (
        "NOT_AVAILABLE"
    )
    with pytest.raises(control.exceptions.ResourceNotFoundException):
        control.get_foundation_model_availability(modelId="stability.no-such-model-v9:0")
