"""Prompt modifiers for generation campaigns: a camera angle and a style appended to the base
prompt, chosen from a recorded seed so every generated image can be reproduced."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

# The seed design's lists: 9 camera angles x 14 styles.
CAMERA_ANGLES: tuple[str, ...] = (
    "eye-level shot",
    "low-angle shot",
    "high-angle shot",
    "bird's-eye view",
    "worm's-eye view",
    "dutch angle",
    "over-the-shoulder shot",
    "close-up",
    "wide shot",
)
STYLES: tuple[str, ...] = (
    "photorealistic",
    "watercolor painting",
    "oil painting",
    "pencil sketch",
    "pixel art",
    "anime",
    "3d render",
    "charcoal drawing",
    "pop art",
    "impressionist painting",
    "cyberpunk",
    "vintage photograph",
    "minimalist",
    "studio lighting",
)


@dataclass(frozen=True)
class Modifiers:
    camera_angle: str
    style: str
    seed: int

    def apply(self, base_prompt: str) -> str:
        return f"{base_prompt}, {self.camera_angle}, {self.style}"

    def as_dict(self) -> dict[str, str | int]:
        return {"camera_angle": self.camera_angle, "style": self.style, "seed": self.seed}


def choose(
    seed: int, angles: Sequence[str] = CAMERA_ANGLES, styles: Sequence[str] = STYLES
) -> Modifiers:
    """The same seed always gives the same modifiers (for the same lists)."""
    if not angles or not styles:
        raise ValueError("camera angle and style lists must not be empty")
    rng = random.Random(seed)
    return Modifiers(
        camera_angle=rng.choice(list(angles)), style=rng.choice(list(styles)), seed=seed
    )
