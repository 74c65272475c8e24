"""Each text-to-image family's own input limits on Bedrock, so a request is refused here with
the reason instead of by the model (Nova's seed range is a quarter of Titan's; Titan reads at
most 512 characters of prompt)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.generation.modifiers import CAMERA_ANGLES, STYLES

# An image model AWS lists as Active (Titan Image Generator v2 and Nova Canvas are Legacy): the
# cheapest of Stability AI's three text-to-image models on Bedrock.
DEFAULT_IMAGE_MODEL = "stability.stable-image-core-v1:1"


@dataclass(frozen=True)
class FamilyLimits:
    max_seed: int
    max_prompt_chars: int


LIMITS: dict[str, FamilyLimits] = {
    "titan": FamilyLimits(max_seed=2_147_483_646, max_prompt_chars=512),
    "nova": FamilyLimits(max_seed=858_993_459, max_prompt_chars=1024),
    "stability": FamilyLimits(max_seed=4_294_967_294, max_prompt_chars=10_000),
}


def family(model_id: str) -> str:
    if model_id.startswith("amazon.titan-image-generator"):
        return "titan"
    if model_id.startswith("amazon.nova-canvas"):
        return "nova"
    if model_id.startswith("stability."):
        return "stability"
    raise ValueError(f"{model_id} is not a supported text-to-image model")


def limits(model_id: str) -> FamilyLimits:
    return LIMITS[family(model_id)]


def seed_in_range(model_id: str, draw: int) -> int:
    """A seed the model accepts, from any non-negative draw (a hash or a random number)."""
    return draw % (limits(model_id).max_seed + 1)


def max_base_prompt_chars(
    model_id: str,
    general_limit: int,
    angles: Sequence[str] = CAMERA_ANGLES,
    styles: Sequence[str] = STYLES,
) -> int:
    """The longest base prompt that still fits the model once the longest camera angle and style
    are appended (", angle, style"), so the rule does not depend on the modifiers drawn."""
    suffix = 4 + max(map(len, angles), default=0) + max(map(len, styles), default=0)
    return min(general_limit, limits(model_id).max_prompt_chars - suffix)
