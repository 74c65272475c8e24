"""Write samples/photos/<subject>/<view>.jpg from samples/originals/<subject>.jpg.

    python samples/make_photos.py

Crops, flips and small rotations of one photo stand in for other camera angles of its subject:
a labelled folder (one sub-folder per subject) for `make demo` and the evaluation harness.
Deterministic: running it again writes the same files.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageOps

HERE = Path(__file__).parent
LONGEST_SIDE = 200


def _crop(image: Image.Image, fraction: float, anchor: tuple[float, float]) -> Image.Image:
    width, height = image.size
    w, h = int(width * fraction), int(height * fraction)
    left, top = int((width - w) * anchor[0]), int((height - h) * anchor[1])
    return image.crop((left, top, left + w, top + h))


def _rotate(image: Image.Image, degrees: float) -> Image.Image:
    """Rotated, then cropped to the centre so no blank corner is left."""
    return _crop(image.rotate(degrees, Image.Resampling.BICUBIC), 0.8, (0.5, 0.5))


def _hue_shift(image: Image.Image, turn: float = 1 / 3) -> Image.Image:
    """Every hue turned a third of the way round the colour wheel (red to green, ...)."""
    h, s, v = image.convert("HSV").split()
    h = h.point(lambda x: (x + int(256 * turn)) % 256)
    return Image.merge("HSV", (h, s, v)).convert("RGB")


# Some views keep the colours (crops, flips, rotations); some change them (grey, hue), so a
# descriptor of colour alone cannot find every view of a subject.
VIEWS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "original": lambda im: im,
    "flip": ImageOps.mirror,
    "crop-center": lambda im: _crop(im, 0.7, (0.5, 0.5)),
    "crop-small": lambda im: _crop(im, 0.5, (0.3, 0.4)),
    "rotate-cw": lambda im: _rotate(im, -12),
    "flip-rotate": lambda im: _rotate(ImageOps.mirror(im), 12),
    "grey": lambda im: ImageOps.grayscale(_crop(im, 0.85, (0.0, 0.5))).convert("RGB"),
    "hue-shift": lambda im: _hue_shift(_crop(im, 0.85, (1.0, 0.5))),
}


def write_views(original: Path, folder: Path) -> list[Path]:
    image = Image.open(original).convert("RGB")
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, view in VIEWS.items():
        out = view(image)
        out.thumbnail((LONGEST_SIDE, LONGEST_SIDE), Image.Resampling.LANCZOS)
        path = folder / f"{name}.jpg"
        out.save(path, quality=85)
        written.append(path)
    return written


def main() -> None:
    for original in sorted((HERE / "originals").glob("*.jpg")):
        write_views(original, HERE / "photos" / original.stem)


if __name__ == "__main__":
    main()
