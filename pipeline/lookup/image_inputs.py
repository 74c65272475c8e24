"""Image inputs of the query routes: `img` (base64) or `url` (s3:// of the project bucket, or
https:// when enabled, with a size cap, a timeout and no private or loopback targets).
No Pillow: the type is sniffed from magic bytes; the embedding model decodes."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

from pipeline.errors import ApiError
from pipeline.settings import Settings

MAGIC = ((b"\xff\xd8\xff", "image/jpeg"), (b"\x89PNG\r\n\x1a\n", "image/png"), (b"BM", "image/bmp"))
URL_TIMEOUT_SECONDS = 10


def sniff(data: bytes) -> str:
    """The content type of an accepted image, from its first bytes; 415 otherwise."""
    for magic, content_type in MAGIC:
        if data.startswith(magic):
            return content_type
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    raise ApiError(415, "unsupported_format", "the image must be jpg/jpeg, png, bmp or webp")


def from_base64(encoded: str, field: str, limit: int) -> bytes:
    if encoded.startswith("data:") and "," in encoded:
        encoded = encoded.split(",", 1)[1]
    try:
        data = base64.b64decode("".join(encoded.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, f"invalid_{field}", f"{field} is not valid base64") from None
    if len(data) > limit:
        raise ApiError(
            413, "payload_too_large", f"{field} is {len(data)} bytes; the limit is {limit}"
        )
    return data


def from_url(url: str, field: str, settings: Settings, s3: Any) -> bytes:
    parts = urlsplit(url)
    limit = settings.limits.max_body_bytes
    if parts.scheme == "s3":
        if parts.netloc != settings.bucket:
            raise ApiError(400, f"invalid_{field}", f"only s3://{settings.bucket}/ URLs are read")
        try:
            response = s3.get_object(Bucket=parts.netloc, Key=parts.path.lstrip("/"))
        except s3.exceptions.NoSuchKey:
            raise ApiError(400, f"invalid_{field}", f"{url} does not exist") from None
        if int(response["ContentLength"]) > limit:
            raise ApiError(413, "payload_too_large", f"{url} is over {limit} bytes")
        return response["Body"].read()
    if parts.scheme == "https" and settings.allow_https_urls:
        return _fetch_https(url, parts.hostname or "", limit)
    allowed = "s3://" + ("or https://" if settings.allow_https_urls else "")
    raise ApiError(400, f"invalid_{field}", f"{field} must be an {allowed} URL")


def _fetch_https(url: str, host: str, limit: int) -> bytes:
    import requests

    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, 443)}
    except socket.gaierror:
        raise ApiError(400, "invalid_url", f"cannot resolve {host}") from None
    for address in addresses:
        ip = ipaddress.ip_address(address)
        if not ip.is_global:
            raise ApiError(400, "invalid_url", f"{host} resolves to a non-public address")
    try:
        with requests.get(
            url, timeout=URL_TIMEOUT_SECONDS, stream=True, allow_redirects=False
        ) as response:
            response.raise_for_status()
            data = b""
            for chunk in response.iter_content(65536):
                data += chunk
                if len(data) > limit:
                    raise ApiError(413, "payload_too_large", f"{url} is over {limit} bytes")
            return data
    except requests.RequestException as exc:
        raise ApiError(400, "invalid_url", f"{url} could not be fetched ({exc})") from None
