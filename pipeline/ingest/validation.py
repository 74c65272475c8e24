"""Image validation: decide from the bytes alone whether an image may enter the pipeline.

Pure: no I/O. The header is read first so oversized or bomb-like images are refused before
any pixel is decoded; a full decode then catches truncated files that `Image.verify` lets
through. Pillow is imported on first use, so the API's query routes never load it.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

from pipeline.settings import Limits

# Pillow format -> (content type, file extension). MPO is how Pillow names a JPEG with
# extra frames (most phone cameras); it is a JPEG for every consumer.
FORMATS: dict[str, tuple[str, str]] = {
    "JPEG": ("image/jpeg", "jpg"),
    "MPO": ("image/jpeg", "jpg"),
    "PNG": ("image/png", "png"),
    "BMP": ("image/bmp", "bmp"),
    "WEBP": ("image/webp", "webp"),
}
EXTENSIONS = {"jpg", "jpeg", "png", "bmp", "webp"}


@dataclass(frozen=True)
class ImageInfo:
    content_type: str
    extension: str
    width: int
    height: int
    sha256: str
    size_bytes: int


class InvalidImage(ValueError):
    """Why an image was refused. `code` is stable and machine-readable."""

    # code -> HTTP status for the API
    STATUS = {
        "empty": 400,
        "too_large": 413,
        "not_an_image": 415,
        "unsupported_format": 415,
        "dimensions_too_large": 400,
        "decompression_bomb": 400,
        "truncated": 400,
        "corrupt": 400,
    }

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        return self.STATUS.get(self.code, 400)

    def reason(self) -> str:
        return f"{self.code}: {self.message}"


def validate_image(data: bytes, limits: Limits, max_bytes: int | None = None) -> ImageInfo:
    """ImageInfo for an acceptable image, or InvalidImage with the first reason it is not."""
    from PIL import Image

    max_bytes = limits.max_object_bytes if max_bytes is None else max_bytes
    if not data:
        raise InvalidImage("empty", "the file is empty")
    if len(data) > max_bytes:
        raise InvalidImage("too_large", f"{len(data)} bytes; the limit is {max_bytes} bytes")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        fmt, width, height = _read_header(data)
        _check_size(width, height, limits)
        _decode_fully(data)
    content_type, extension = FORMATS[fmt]
    return ImageInfo(
        content_type=content_type,
        extension=extension,
        width=width,
        height=height,
        sha256=hashlib.sha256(data).hexdigest(),
        size_bytes=len(data),
    )


def _read_header(data: bytes) -> tuple[str, int, int]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            fmt, (width, height) = image.format or "", image.size
    except UnidentifiedImageError:
        raise InvalidImage("not_an_image", "the bytes are not a recognised image") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InvalidImage("decompression_bomb", str(exc)) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidImage("corrupt", f"the image header cannot be read ({exc})") from None
    if fmt not in FORMATS:
        allowed = ", ".join(sorted(EXTENSIONS))
        raise InvalidImage(
            "unsupported_format", f"{fmt or 'unknown'} images are not accepted (allowed: {allowed})"
        )
    return fmt, width, height


def _check_size(width: int, height: int, limits: Limits) -> None:
    if width < 1 or height < 1:
        raise InvalidImage("corrupt", f"the image claims a size of {width}x{height}")
    if max(width, height) > limits.max_side:
        raise InvalidImage(
            "dimensions_too_large",
            f"{width}x{height}: the longest side may be at most {limits.max_side} px",
        )
    if width * height > limits.max_pixels:
        raise InvalidImage(
            "decompression_bomb",
            f"{width}x{height} is {width * height} pixels; the limit is {limits.max_pixels}",
        )


def _decode_fully(data: bytes) -> None:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
        with Image.open(io.BytesIO(data)) as image:
            image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InvalidImage("decompression_bomb", str(exc)) from None
    except OSError as exc:
        if "truncated" in str(exc).lower():
            raise InvalidImage("truncated", f"the image data is truncated ({exc})") from None
        raise InvalidImage("corrupt", f"the image data cannot be decoded ({exc})") from None
    except (SyntaxError, ValueError) as exc:
        raise InvalidImage("corrupt", f"the image data cannot be decoded ({exc})") from None
