"""Image inputs of the query routes: `img` (base64) or `url` (s3:// of the project bucket, or
https:// when enabled, with a size cap, a deadline and no private or loopback targets).
No Pillow: the type is sniffed from magic bytes; the embedding model decodes.

An https:// URL is refused unless it is plain (ASCII, no userinfo, no backslash, and it reads
back the same after parsing), so that the host checked here is the host connected to. Its
name is resolved once; every address must pass the check, and the connection goes to the first
of them (no second lookup that DNS rebinding could answer differently), with the name kept for
SNI, certificate verification and the Host header. A failed fetch answers one fixed message:
nothing of the upstream's answer or error reaches the client."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, urlsplit, urlunsplit

from pipeline.errors import ApiError
from pipeline.settings import Settings

MAGIC = ((b"\xff\xd8\xff", "image/jpeg"), (b"\x89PNG\r\n\x1a\n", "image/png"), (b"BM", "image/bmp"))
URL_TIMEOUT_SECONDS = 10
MAX_S3_KEY_BYTES = 1024  # S3's own limit
MAX_URL_CHARS = 2048
HOST_NAME = re.compile(
    r"(?=.{1,253}\.?$)(?!-)[a-z0-9_-]{1,63}(?<!-)(\.(?!-)[a-z0-9_-]{1,63}(?<!-))*\.?"
)

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def is_public(address: IpAddress) -> bool:
    """The default address check: only globally routable addresses."""
    return address.is_global


def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to, in the resolver's order."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True)
class HttpsFetcher:
    """How https:// inputs are fetched; tests hand in a resolver, an address check and a CA."""

    allowed: Callable[[IpAddress], bool] = is_public
    resolve: Callable[[str, int], list[str]] = resolve
    ca_certs: str | None = None  # None: certifi's bundle
    timeout: float = URL_TIMEOUT_SECONDS


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


def from_url(
    url: str, field: str, settings: Settings, s3: Any, https: HttpsFetcher | None = None
) -> bytes:
    limit = settings.limits.max_image_bytes
    if url.startswith("s3://"):
        return _read_s3(url, field, settings.bucket, s3, limit)
    if url.startswith("https://") and settings.allow_https_urls:
        return _fetch_https(_plain_https(url, field), field, limit, https or HttpsFetcher())
    allowed = "s3:// or https://" if settings.allow_https_urls else "s3://"
    raise ApiError(400, f"invalid_{field}", f"{field} must be an {allowed} URL")


def _read_s3(url: str, field: str, bucket: str, s3: Any, limit: int) -> bytes:
    prefix = f"s3://{bucket}/"
    if not url.startswith(prefix):
        raise ApiError(400, f"invalid_{field}", f"only {prefix} URLs are read")
    key = url[len(prefix) :]
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        size = 0
    if not 0 < size <= MAX_S3_KEY_BYTES:
        raise ApiError(
            400, f"invalid_{field}", f"{field} needs a key of 1 to {MAX_S3_KEY_BYTES} UTF-8 bytes"
        )
    try:
        response = s3.get_object(Bucket=bucket, Key=key)
    except s3.exceptions.ClientError as exc:
        # NoSuchKey, or 403 where the function may not list the bucket; S3's own 5xx stay
        if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 500) >= 500:
            raise
        raise ApiError(400, f"invalid_{field}", f"{field} names no object") from None
    if int(response["ContentLength"]) > limit:
        raise ApiError(413, "payload_too_large", f"{field} is over {limit} bytes")
    data: bytes = response["Body"].read()
    return data


def _plain_https(url: str, field: str) -> SplitResult:
    """The parts of an https:// URL that every parser reads the same way; 400 otherwise."""
    refused = ApiError(
        400,
        f"invalid_{field}",
        f"{field} must be a plain https://host[:port]/path URL (ASCII, no user info)",
    )
    if (
        len(url) > MAX_URL_CHARS
        or not url.isascii()
        or not url.isprintable()
        or any(char in url for char in " \\")
    ):
        raise refused
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise refused from None
    host = parts.hostname or ""
    if "@" in parts.netloc or urlunsplit(parts) != url or port == 0:
        raise refused
    if not (_ip(host) or HOST_NAME.fullmatch(host)):
        raise refused
    return parts


def _ip(host: str) -> IpAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _fetch_https(parts: SplitResult, field: str, limit: int, fetcher: HttpsFetcher) -> bytes:
    import certifi
    import urllib3

    host, port = parts.hostname or "", parts.port or 443
    try:
        addresses = [ipaddress.ip_address(a) for a in fetcher.resolve(host, port)]
    except (OSError, UnicodeError, ValueError):
        raise ApiError(400, f"invalid_{field}", f"cannot resolve the host of {field}") from None
    if not addresses or not all(fetcher.allowed(address) for address in addresses):
        raise ApiError(400, f"invalid_{field}", f"{host} resolves to a non-public address")
    failed = ApiError(400, f"invalid_{field}", f"{field} could not be fetched")
    deadline = time.monotonic() + fetcher.timeout
    pool = urllib3.HTTPSConnectionPool(
        str(addresses[0]),  # the checked address: the name is not looked up again
        port,
        server_hostname=host,  # SNI
        assert_hostname=host,  # the certificate must be the name's
        cert_reqs="CERT_REQUIRED",
        ca_certs=fetcher.ca_certs or certifi.where(),
        timeout=urllib3.Timeout(connect=fetcher.timeout, read=fetcher.timeout),
        retries=False,
        maxsize=1,
    )
    target = urlunsplit(("", "", parts.path or "/", parts.query, ""))
    try:
        response = pool.urlopen(
            "GET",
            target,
            headers={"Host": parts.netloc, "Accept": "image/*"},
            redirect=False,
            preload_content=False,
            assert_same_host=False,
        )
        try:
            if response.status != 200:
                raise failed
            length = response.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) > limit:
                raise ApiError(413, "payload_too_large", f"{field} is over {limit} bytes")
            data = b""
            for chunk in response.stream(65536):
                data += chunk
                if len(data) > limit:
                    raise ApiError(413, "payload_too_large", f"{field} is over {limit} bytes")
                if time.monotonic() > deadline:
                    raise failed
            return data
        finally:
            response.release_conn()
    except (urllib3.exceptions.HTTPError, OSError, ValueError):
        raise failed from None
    finally:
        pool.close()
