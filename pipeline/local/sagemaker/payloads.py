"""Batch-transform input semantics: which objects, split into which records, packed into
which payloads, and where each output goes. Pure functions."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from urllib.parse import urlsplit

MB = 1024 * 1024


class TransformError(ValueError):
    """Raised for input the job cannot process; becomes the job's FailureReason."""


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
