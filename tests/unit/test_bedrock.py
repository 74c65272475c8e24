"""Request bodies and responses of the text-to-image families, the retry configuration and the
prompt modifiers."""

import base64
from datetime import date

import pytest

from pipeline.generation.bedrock import (
    CAMPAIGN_BUDGET,
    BedrockImages,
    Refused,
    aspect_ratio,
    family,
    image_from_response,
    request_body,
)
from pipeline.generation.families import DEFAULT_IMAGE_MODEL, max_base_prompt_chars, seed_in_range
from pipeline.generation.model_status import ModelStatus, ModelUnavailable, verdict
from pipeline.generation.modifiers import CAMERA_ANGLES, STYLES, choose
from pipeline.local.bedrock.catalogue import MODELS
from pipeline.settings import Settings


def test_titan_v2_text_image_body():
    body = request_body("amazon.titan-image-generator-v2:0", "a fork", 1024, 768, 42, 7.5)
    assert body == {
        "taskType": "TEXT_IMAGE",
        "textToImageParams": {"text": "a fork"},
        "imageGenerationConfig": {
            "numberOfImages": 1,
            "width": 1024,
            "height": 768,
            "cfgScale": 7.5,
            "seed": 42,
            "quality": "standard",
        },
    }


def test_nova_canvas_uses_the_same_task_shape():
    body = request_body("amazon.nova-canvas-v1:0", "a fork", 512, 512, 1)
    assert body["taskType"] == "TEXT_IMAGE" and body["imageGenerationConfig"]["seed"] == 1


@pytest.mark.parametrize(
    "model_id",
    [
        "stability.sd3-5-large-v1:0",
        "stability.stable-image-ultra-v1:1",
        "stability.stable-image-core-v1:1",
    ],
)
def test_stability_body(model_id):
    body = request_body(model_id, "a fork", 1024, 576, 9)
    assert body == {
        "prompt": "a fork",
        "mode": "text-to-image",
        "seed": 9,
        "output_format": "png",
        "aspect_ratio": "16:9",
    }


def test_aspect_ratio_picks_the_nearest_supported_one():
    assert aspect_ratio(512, 512) == "1:1"
    assert aspect_ratio(700, 1000) == "2:3"


def test_unknown_models_are_refused():
    with pytest.raises(ValueError):
        family("openai.dall-e")


def test_responses_and_refusals():
    png = base64.b64encode(b"\x89PNG...").decode()
    assert (
        image_from_response("amazon.titan-image-generator-v2:0", {"images": [png], "error": None})
        == b"\x89PNG..."
    )
    with pytest.raises(Refused, match="Filter reason"):
        image_from_response(
            "stability.sd3-5-large-v1:0",
            {"seeds": [1], "finish_reasons": ["Filter reason: prompt"], "images": []},
        )
    with pytest.raises(Refused, match="blocked"):
        image_from_response("amazon.nova-canvas-v1:0", {"images": [], "error": "blocked"})


def test_modifiers_are_reproducible_and_cover_the_seed_lists():
    assert len(CAMERA_ANGLES) == 9 and len(STYLES) == 14
    assert choose(123) == choose(123)
    seen = {(m.camera_angle, m.style) for m in (choose(s) for s in range(2000))}
    assert len(seen) > 100
    modifiers = choose(5, angles=["close-up"], styles=["pixel art"])
    assert modifiers.apply("a fork") == "a fork, close-up, pixel art"
    assert modifiers.as_dict() == {"camera_angle": "close-up", "style": "pixel art", "seed": 5}
    with pytest.raises(ValueError):
        choose(1, angles=[])


def test_the_client_retries_in_botocores_standard_mode_within_its_budget():
    client = BedrockImages(Settings()).client  # the API's budget unless told otherwise
    assert client.meta.config.retries == {"mode": "standard", "total_max_attempts": 2}
    assert (client.meta.config.connect_timeout, client.meta.config.read_timeout) == (2, 9)
    campaign = BedrockImages(Settings(), budget=CAMPAIGN_BUDGET).client
    assert campaign.meta.config.retries["total_max_attempts"] == CAMPAIGN_BUDGET.attempts


@pytest.mark.parametrize(
    ("model_id", "top"),
    [
        ("amazon.nova-canvas-v1:0", 858_993_459),
        ("amazon.titan-image-generator-v2:0", 2_147_483_646),
        ("stability.stable-image-core-v1:1", 4_294_967_294),
    ],
)
def test_seeds_are_drawn_inside_each_familys_range(model_id, top):
    draws = [0, top, top + 1, 2**31 - 1, 2**32 - 1]
    assert all(0 <= seed_in_range(model_id, d) <= top for d in draws)
    assert seed_in_range(model_id, top) == top


def test_titan_prompts_leave_room_for_the_modifiers():
    limit = max_base_prompt_chars("amazon.titan-image-generator-v2:0", 1000)
    longest = choose(0, [max(CAMERA_ANGLES, key=len)], [max(STYLES, key=len)])
    assert len(longest.apply("x" * limit)) == 512
    assert max_base_prompt_chars("stability.stable-image-core-v1:1", 1000) == 1000


def test_lifecycle_verdicts():
    titan = ModelStatus("amazon.titan-image-generator-v2:0", "LEGACY", date(2026, 6, 30))
    legacy, message = verdict(titan, date(2026, 6, 29))
    assert legacy and "closed to new customers" in message and "2026-06-30" in message
    with pytest.raises(ModelUnavailable, match="end of life on 2026-06-30"):
        verdict(titan, date(2026, 6, 30))
    legacy, message = verdict(ModelStatus("stability.sd3-5-large-v1:0", "ACTIVE"), date(2026, 1, 1))
    assert not legacy and "aws-marketplace:Subscribe" in message


def test_the_default_image_model_is_one_aws_lists_as_active():
    assert Settings().image_model_id == DEFAULT_IMAGE_MODEL
    assert MODELS[DEFAULT_IMAGE_MODEL].status == "ACTIVE"
