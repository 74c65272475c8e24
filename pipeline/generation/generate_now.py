"""GET /images?prompt=P: generate one image now (random modifiers, recorded seed), store it
under generated/, record it and queue it for embedding through the ingest path's logic."""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipeline.errors import ApiError
from pipeline.generation.bedrock import (
    BedrockImages,
    ModelUnavailable,
    Refused,
    Throttled,
    TimedOut,
)
from pipeline.generation.families import DEFAULT_IMAGE_MODEL, max_base_prompt_chars, seed_in_range
from pipeline.generation.modifiers import choose
from pipeline.ingest.ingestor import Ingestor
from pipeline.prompts import InvalidPrompt, checked_prompt
from pipeline.storage.keys import image_key, new_image_id


@dataclass(frozen=True)
class ImageModel:
    model_id: str = DEFAULT_IMAGE_MODEL
    width: int = 512
    height: int = 512
    cfg_scale: float = 8.0


def generation_metadata(
    base: str, modified: str, model: ImageModel, seed: int, modifiers: Mapping[str, Any]
) -> dict[str, str]:
    """S3 object metadata that the ingest path turns into the Images item's fields."""
    generation = {
        "model_id": model.model_id,
        "seed": seed,
        "width": model.width,
        "height": model.height,
        "cfg_scale": model.cfg_scale,
        "modifiers": dict(modifiers),
    }
    return {"prompt": base, "modified-prompt": modified, "generation": json.dumps(generation)}


def generate_now(
    prompt: str,
    ingestor: Ingestor,
    bedrock: BedrockImages,
    model: ImageModel,
    rng: random.Random | None = None,
) -> dict[str, Any]:
    limit = max_base_prompt_chars(model.model_id, ingestor.settings.limits.max_prompt_chars)
    try:
        base = checked_prompt(prompt, limit)
    except InvalidPrompt as exc:
        raise ApiError(400, "invalid_prompt", f"prompt ({model.model_id}): {exc}") from None
    seed = seed_in_range(model.model_id, (rng or random.SystemRandom()).randrange(2**32))
    modifiers = choose(seed)
    modified = modifiers.apply(base)
    try:
        result = bedrock.generate(
            model.model_id, modified, model.width, model.height, seed, model.cfg_scale
        )
    except Throttled as exc:
        raise ApiError(429, "throttled", f"the image model is busy; try again ({exc})") from None
    except Refused as exc:
        raise ApiError(502, "model_refused", f"the image model refused the prompt: {exc}") from None
    except ModelUnavailable as exc:
        raise ApiError(502, "model_unavailable", f"the image model is unavailable: {exc}") from None
    except TimedOut as exc:
        raise ApiError(502, "model_timeout", f"the image model did not answer: {exc}") from None
    except bedrock.client.exceptions.ClientError as exc:
        raise ApiError(
            502,
            "model_error",
            f"the image model failed: {exc.response['Error'].get('Message', exc)}",
        ) from None
    image_id = new_image_id()
    key = image_key(ingestor.settings.generated_prefix, image_id, "png")
    metadata = generation_metadata(base, modified, model, seed, modifiers.as_dict())
    ingestor.store(key, result.image, "image/png", metadata)
    return {
        "base_prompt": base,
        "modified_prompt": modified,
        "image_id": image_id,
        "model_id": model.model_id,
        "seed": seed,
    }
