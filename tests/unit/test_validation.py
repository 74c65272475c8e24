import struct
import zlib

import pytest

from pipeline.ingest.validation import InvalidImage, validate_image
from pipeline.settings import Limits
from tests.helpers import gradient_jpeg, image_bytes

LIMITS = Limits()


@pytest.mark.parametrize(
    "fmt,content_type,ext",
    [
        ("JPEG", "image/jpeg", "jpg"),
        ("PNG", "image/png", "png"),
        ("BMP", "image/bmp", "bmp"),
        ("WEBP", "image/webp", "webp"),
    ],
)
def test_accepts_supported_formats_and_reports_the_real_type(fmt, content_type, ext):
    info = validate_image(image_bytes(fmt, (40, 30)), LIMITS)
    assert (info.content_type, info.extension, info.width, info.height) == (
        content_type,
        ext,
        40,
        30,
    )
    assert len(info.sha256) == 64


def _refusal(data: bytes, limits: Limits = LIMITS) -> InvalidImage:
    with pytest.raises(InvalidImage) as caught:
        validate_image(data, limits)
    return caught.value


def test_refuses_empty_bytes():
    assert _refusal(b"").code == "empty"


def test_refuses_bytes_that_are_not_an_image():
    err = _refusal(b"%PDF-1.4 definitely not a picture")
    assert (err.code, err.http_status) == ("not_an_image", 415)


@pytest.mark.parametrize("fmt", ["GIF", "TIFF"])
def test_refuses_formats_outside_the_list(fmt):
    err = _refusal(image_bytes(fmt))
    assert (err.code, err.http_status) == ("unsupported_format", 415)
    assert fmt in err.message


def test_refuses_a_truncated_jpeg():
    data = gradient_jpeg()
    err = _refusal(data[: len(data) // 2])
    assert err.code == "truncated"


def test_refuses_a_truncated_png():
    data = image_bytes("PNG", (300, 200))
    assert _refusal(data[: len(data) - 40]).code in ("truncated", "corrupt")


def test_refuses_an_image_whose_longest_side_is_over_the_limit():
    err = _refusal(image_bytes("PNG", (4097, 8)))
    assert err.code == "dimensions_too_large" and "4096" in err.message


def test_accepts_an_image_exactly_at_the_side_limit():
    assert validate_image(image_bytes("PNG", (4096, 4)), LIMITS).width == 4096


def _png_header_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims a huge canvas: the decompression-bomb shape."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_refuses_a_decompression_bomb_before_decoding_it():
    err = _refusal(_png_header_claiming(100_000, 100_000))
    assert err.code in ("decompression_bomb", "dimensions_too_large")


def test_pixel_cap_applies_below_the_side_limit():
    err = _refusal(image_bytes("PNG", (1000, 1000)), Limits(max_pixels=500_000))
    assert err.code == "decompression_bomb"


def test_refuses_bytes_over_the_size_cap():
    err = _refusal(image_bytes("BMP", (200, 200)), Limits(max_object_bytes=1000))
    assert (err.code, err.http_status) == ("too_large", 413)
