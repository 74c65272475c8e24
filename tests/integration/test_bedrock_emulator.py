"""The Bedrock client against the Bedrock runtime emulator, through boto3's bedrock-runtime
client and an endpoint URL: the same code path as on AWS."""

from __future__ import annotations

import io
from types import SimpleNamespace

import botocore.endpoint
import numpy as np
import pytest
from PIL import Image

from pipeline.generation.bedrock import BedrockImages, Refused, Throttled
from pipeline.local.bedrock.server import BedrockEmulator, Behaviour
from pipeline.settings import Settings
from sagemaker_jobs.clip_embed.code.embedders import ColorLayoutEmbedder

TITAN = "amazon.titan-image-generator-v2:0"


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

    def start(max_attempts: int = 6, **behaviour) -> tuple[BedrockImages, Behaviour]:
        server = BedrockEmulator(Behaviour(**behaviour)).start()
        servers.append(server)
        settings = Settings().with_endpoint(server.url, ("bedrock-runtime",))
        return BedrockImages(settings, max_attempts=max_attempts), server.behaviour

    yield start
    for server in servers:
        server.stop()


def _vector(png: bytes) -> np.ndarray:
    embedder = ColorLayoutEmbedder()
    return embedder.embed(embedder.preprocess(Image.open(io.BytesIO(png)))[None])[0]


@pytest.mark.parametrize(
    "model_id", [TITAN, "amazon.nova-canvas-v1:0", "stability.sd3-5-large-v1:0"]
)
def test_each_family_returns_a_png_named_as_a_stand_in(emulator, model_id):
    client, _ = emulator()
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
