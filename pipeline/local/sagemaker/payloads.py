"""Batch-transform input semantics: which objects, split into which records, packed into
which payloads, and where each output goes. Pure functions."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

MB = 1024 * 1024
# TorchServe's defaults in SageMaker's PyTorch serving container (max_request_size,
# max_response_size, default_response_timeout), unless the model's environment changes them.
TS_DEFAULT_MAX_BYTES = 6_553_500
DEFAULT_SERVER_TIMEOUT_SECONDS = 60


class TransformError(ValueError):
    """Raised for input the job cannot process; becomes the job's FailureReason."""


@dataclass(frozen=True)
class ServerLimits:
    """What the model server inside the container accepts and answers: one request of at most
    `max_request_bytes`, one response of at most `max_response_bytes`, within `timeout_seconds`.
    Read from the container's environment the way the serving container reads it."""

    max_request_bytes: int = TS_DEFAULT_MAX_BYTES
    max_response_bytes: int = TS_DEFAULT_MAX_BYTES
    timeout_seconds: float = DEFAULT_SERVER_TIMEOUT_SECONDS

    @classmethod
    def from_environment(cls, env: Mapping[str, str]) -> ServerLimits:
        return cls(
            max_request_bytes=int(env.get("TS_MAX_REQUEST_SIZE", TS_DEFAULT_MAX_BYTES)),
            max_response_bytes=int(env.get("TS_MAX_RESPONSE_SIZE", TS_DEFAULT_MAX_BYTES)),
            timeout_seconds=float(
                env.get("SAGEMAKER_MODEL_SERVER_TIMEOUT", DEFAULT_SERVER_TIMEOUT_SECONDS)
            ),
        )

    def check_request(self, payload: bytes) -> None:
        if len(payload) > self.max_request_bytes:
            raise TransformError(
                f"request of {len(payload)} bytes exceeds the model server's max_request_size "
                f"({self.max_request_bytes} bytes; TS_MAX_REQUEST_SIZE)"
            )

    def check_response(self, output: bytes, seconds: float) -> None:
        if seconds > self.timeout_seconds:
            raise TransformError(
                f"the model server took {seconds:.1f} s, over its response timeout of "
                f"{self.timeout_seconds:g} s (SAGEMAKER_MODEL_SERVER_TIMEOUT)"
            )
        if len(output) > self.max_response_bytes:
            raise TransformError(
                f"response of {len(output)} bytes exceeds the model server's max_response_size "
                f"({self.max_response_bytes} bytes; TS_MAX_RESPONSE_SIZE)"
            )


def check_job_limits(request: Mapping[str, object]) -> str | None:
    """CreateTransformJob's own limits on payload size: the reason it is refused, or None."""
    payload_mb = int(str(request.get("MaxPayloadInMB", 6)))
    concurrent = int(str(request.get("MaxConcurrentTransforms", 1) or 1))
    if not 0 <= payload_mb <= 100:
        return f"MaxPayloadInMB must be between 0 and 100, not {payload_mb}"
    if payload_mb * concurrent > 100:
        return (
            f"MaxConcurrentTransforms x MaxPayloadInMB must not exceed 100 MB "
            f"({concurrent} x {payload_mb})"
        )
    return None


def split_s3_uri(uri: str) -> tuple[str, str]:
    parts = urlsplit(uri)
    if parts.scheme != "s3" or not parts.netloc:
        raise TransformError(f"not an s3:// URI: {uri}")
    return parts.netloc, parts.path.lstrip("/")


def manifest_objects(manifest: bytes) -> list[str]:
    """S3 URIs listed by a SageMaker manifest file: `[{"prefix": "s3://b/p/"}, "k1", "k2"]`."""
    try:
        entries = json.loads(manifest)
        prefix = entries[0]["prefix"]
    except (json.JSONDecodeError, LookupError, TypeError) as exc:
        raise TransformError(f"manifest file is malformed ({exc})") from None
    return [prefix + str(relative) for relative in entries[1:]]


def split_records(data: bytes, split_type: str) -> list[bytes]:
    """SplitType=Line: one record per non-empty line. None: the whole object is one record."""
    if split_type == "Line":
        return [line for line in data.split(b"\n") if line.strip()]
    if split_type in ("None", ""):
        return [data]
    raise TransformError(f"SplitType {split_type} is not supported by the emulator")


def pack_payloads(
    records: Iterable[bytes], strategy: str, max_payload_mb: int, split_type: str
) -> Iterator[bytes]:
    """MultiRecord: as many records per payload as fit in MaxPayloadInMB; SingleRecord: one."""
    limit = max_payload_mb * MB if max_payload_mb else 100 * MB
    joiner = b"\n" if split_type == "Line" else b""
    batch: list[bytes] = []
    size = 0
    for record in records:
        if len(record) > limit:
            raise TransformError(
                f"a record of {len(record)} bytes exceeds MaxPayloadInMB={max_payload_mb}"
            )
        if batch and (strategy != "MultiRecord" or size + len(record) + 1 > limit):
            yield joiner.join(batch) + joiner
            batch, size = [], 0
        batch.append(record)
        size += len(record) + 1
    if batch:
        yield joiner.join(batch) + joiner


def output_key(output_path: str, input_uri: str, input_prefix: str) -> tuple[str, str]:
    """`<S3OutputPath>/<input path relative to the input prefix>.out` (bucket, key)."""
    bucket, base = split_s3_uri(output_path.rstrip("/") + "/")
    _, input_key = split_s3_uri(input_uri)
    _, prefix_key = split_s3_uri(input_prefix)
    relative = (
        input_key[len(prefix_key) :].lstrip("/")
        if input_key.startswith(prefix_key) and input_key != prefix_key
        else input_key.rsplit("/", 1)[-1]
    )
    return bucket, f"{base}{relative}.out"


def assemble(outputs: Sequence[str | bytes], assemble_with: str) -> bytes:
    parts = [o.encode("utf-8") if isinstance(o, str) else o for o in outputs]
    if assemble_with == "Line":
        return b"".join(p if p.endswith(b"\n") else p + b"\n" for p in parts if p)
    return b"".join(parts)
