"""The procedural painter: same base prompt -> related pictures (palette and composition come
from the base prompt), the seed jitters them, a camera angle or a style visibly changes them."""

from __future__ import annotations

import hashlib
import io
import random

from PIL import Image, ImageDraw, ImageFilter, ImageOps, PngImagePlugin

from pipeline.generation.modifiers import CAMERA_ANGLES, STYLES

STAND_IN = "imgsim procedural painter (a Bedrock stand-in, not a model)"


def split_prompt(prompt: str) -> tuple[str, str | None, str | None]:
    """(base, camera angle, style) of a prompt built by pipeline.modifiers."""
    parts = [p.strip() for p in prompt.split(",")]
    style = parts.pop() if len(parts) > 1 and parts[-1] in STYLES else None
    angle = parts.pop() if len(parts) > 1 and parts[-1] in CAMERA_ANGLES else None
    return ", ".join(parts), angle, style


def _rng(text: str) -> random.Random:
    return random.Random(int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big"))


def paint(prompt: str, width: int, height: int, seed: int) -> bytes:
    base, angle, style = split_prompt(prompt)
    scene, jitter = _rng(base.lower()), random.Random(seed)
    palette = [tuple(scene.randrange(256) for _ in range(3)) for _ in range(4)]
    image = Image.new("RGB", (width, height), palette[0])
    draw = ImageDraw.Draw(image)
    for y in range(0, height, 4):  # a vertical gradient between two palette colours
        t = y / max(1, height - 1)
        colour = tuple(
            int(a * (1 - t) + b * t) for a, b in zip(palette[0], palette[1], strict=True)
        )
        draw.rectangle([0, y, width, y + 4], fill=colour)
    for _ in range(6):  # the subject: shapes placed by the base prompt, nudged by the seed
        cx = scene.uniform(0.15, 0.85) * width + jitter.uniform(-0.03, 0.03) * width
        cy = scene.uniform(0.15, 0.85) * height + jitter.uniform(-0.03, 0.03) * height
        r = scene.uniform(0.05, 0.2) * min(width, height)
        colour = palette[2 + scene.randrange(2)]
        if scene.random() < 0.5:
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
        else:
            draw.rectangle([cx - r, cy - r * 0.6, cx + r, cy + r * 0.6], fill=colour)
    image = _camera(image, angle)
    image = _style(image, style)
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", STAND_IN)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def _camera(image: Image.Image, angle: str | None) -> Image.Image:
    w, h = image.size
    if angle == "close-up":
        return image.crop((w // 4, h // 4, 3 * w // 4, 3 * h // 4)).resize((w, h))
    if angle == "wide shot":
        small = image.resize((w // 2, h // 2))
        canvas = Image.new("RGB", (w, h), image.getpixel((0, 0)))
        canvas.paste(small, (w // 4, h // 4))
        return canvas
    if angle == "dutch angle":
        return image.rotate(18, expand=False, fillcolor=image.getpixel((0, 0)))
    if angle in ("bird's-eye view", "high-angle shot"):
        return ImageOps.flip(image)
    if angle in ("worm's-eye view", "low-angle shot"):
        return ImageOps.mirror(ImageOps.flip(image))
    if angle == "over-the-shoulder shot":
        return ImageOps.mirror(image)
    return image


def _style(image: Image.Image, style: str | None) -> Image.Image:
    if style in ("pencil sketch", "charcoal drawing"):
        return ImageOps.invert(image.convert("L").filter(ImageFilter.FIND_EDGES)).convert("RGB")
    if style == "pixel art":
        w, h = image.size
        return image.resize((max(1, w // 16), max(1, h // 16))).resize(
            (w, h), Image.Resampling.NEAREST
        )
    if style in ("watercolor painting", "impressionist painting", "oil painting"):
        return image.filter(ImageFilter.GaussianBlur(4))
    if style in ("pop art", "anime", "cyberpunk"):
        return ImageOps.posterize(image, 2)
    if style == "vintage photograph":
        return ImageOps.colorize(image.convert("L"), "#2b1d0e", "#f2d9a6")
    if style == "minimalist":
        return ImageOps.grayscale(image).convert("RGB")
    return image
