"""The Bedrock client against the Bedrock runtime emulator, through boto3's bedrock-runtime
client and an endpoint URL: the same code path as on AWS."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from pipeline.generation.bedrock import BedrockImages, Refused, Throttled
from pipeline.local.bedrock.server import BedrockEmulator, Behaviour
from pipeline.settings import Settings
from sagemaker_jobs.clip_embed.code.embedders import ColorLayoutEmbedder

TITAN = "amazon.titan-image-generator-v2:0"


@pytest.fixture
def emulator():
    servers = []

    def start(**behaviour) -> tuple[BedrockImages, Behaviour]:
        server = BedrockEmulator(Behaviour(**behaviour)).start()
        servers.append(server)
        settings = Settings().with_endpoint(server.url, ("bedrock-runtime",))
        return BedrockImages(settings, sleep=lambda _: None), server.behaviour

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


def test_throttling_is_retried_with_backoff(emulator):
    client, behaviour = emulator(throttle_rate=0.6, seed=3)
    waits = []
    client._sleep = waits.append
    results = [client.generate(TITAN, "a fork", 512, 512, s) for s in range(5)]
    assert any(r.attempts > 1 for r in results)
    assert behaviour.calls == sum(r.attempts for r in results)
    assert waits and all(w >= 0 for w in waits)


def test_throttled_after_every_retry_says_so(emulator):
    client, behaviour = emulator(throttle_rate=1.0)
    with pytest.raises(Throttled, match="ThrottlingException"):
        client.generate(TITAN, "a fork", 512, 512, 1)
    assert behaviour.calls == client.max_attempts


@pytest.mark.parametrize("model_id", [TITAN, "stability.stable-image-ultra-v1:1"])
def test_a_refusal_is_not_retried_and_keeps_its_reason(emulator, model_id):
    client, behaviour = emulator()
    with pytest.raises(Refused) as refused:
        client.generate(model_id, "something forbidden", 512, 512, 1)
    assert behaviour.calls == 1 and ("filter" in str(refused.value).lower())


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
