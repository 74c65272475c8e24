"""What the gallery's browser tests search: the sample photos and variations of them under one
prompt, and smaller prompts that sort before it (the page must open on the biggest, not on
the first)."""

from __future__ import annotations

import io

from PIL import Image, ImageOps

from pipeline.local.demo import SAMPLES

PROMPT = "sample photos"
MODEL = "clip-tiny-random-init-seed0"  # the tiny artifact's model id: random weights
# smaller prompts, each image a copy of one of PROMPT's (same bytes, same vector)
SMALL_PROMPTS = {
    "a cat": ["chelsea"],
    "an astronaut": ["astronaut", "astronaut-crop", "astronaut-mirror"],
}


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


def small_prompt_ids(prompt: str) -> dict[str, str]:
    """The image ids of a smaller prompt, each with the photo it copies."""
    slug = prompt.replace(" ", "-")
    return {f"{slug}-{source}": source for source in SMALL_PROMPTS[prompt]}
