"""Which recorded moto requests to replay so `up` after `down` restores the stack's state.

Replayed: every request that changed durable state (S3 writes, DynamoDB writes, CloudFormation,
queue and bucket configuration). Dropped: reads, and SQS message traffic: replaying a
receive or delete cannot work (receipt handles are per session), and in-flight messages are
not state the pipeline relies on (the S3 writes it replays re-announce every object, and
ingest is idempotent).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

if TYPE_CHECKING:
    from pipeline.local.moto_server import MotoServer

log = logging.getLogger(__name__)

_DYNAMODB_READS = {
    "GetItem",
    "BatchGetItem",
    "Query",
    "Scan",
    "DescribeTable",
    "ListTables",
    "DescribeTimeToLive",
    "DescribeContinuousBackups",
    "ListTagsOfResource",
}
_SQS_KEPT = {"CreateQueue", "SetQueueAttributes", "DeleteQueue", "TagQueue", "UntagQueue"}


def _operation(entry: dict) -> tuple[str, str]:
    """(service prefix, operation) for JSON-protocol requests, ('query', Action) otherwise."""
    headers = {k.lower(): v for k, v in (entry.get("headers") or {}).items()}
    target = headers.get("x-amz-target", "")
    if "." in target:
        prefix, operation = target.split(".", 1)
        return prefix, operation
    body = entry.get("body") or ""
    if not entry.get("body_encoded") and "Action=" in body:
        return "query", parse_qs(body).get("Action", [""])[0]
    return "", ""


def keep(entry: dict) -> bool:
    """True for a recorded request that changed durable state."""
    method = (entry.get("method") or "").upper()
    prefix, operation = _operation(entry)
    if prefix.startswith("DynamoDB"):
        return operation not in _DYNAMODB_READS
    if prefix == "AmazonSQS":
        return operation in _SQS_KEPT
    if prefix == "query":
        return not operation.startswith(
            ("Describe", "List", "Get", "Receive", "DeleteMessage", "SendMessage", "ChangeMessage")
        )
    return method not in ("GET", "HEAD", "OPTIONS")


@dataclass(frozen=True)
class Filtered:
    kept: list[str]  # the lines to replay, in order
    unreadable: list[str]  # lines that are not one JSON record: reported and set aside


def filter_recording(lines: Iterable[str]) -> Filtered:
    kept, unreadable = [], []
    for line in lines:
        line = line.strip()
        if not line:
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            unreadable.append(line)
            continue
        if isinstance(entry, dict) and keep(entry):
            kept.append(line)
        elif not isinstance(entry, dict):
            unreadable.append(line)
    return Filtered(kept, unreadable)


def restore_state(moto: MotoServer, recording: Path) -> Filtered | None:
    """Replay what changed durable state last time, then record from here on. A line that
    cannot be read never stops `up`: it is skipped, kept beside the recording and reported."""
    filtered = None
    if recording.exists() and recording.stat().st_size:
        filtered = filter_recording(recording.read_text().splitlines())
        if filtered.unreadable:
            skipped = recording.with_name(recording.name + ".unreadable")
            with skipped.open("a") as file:
                file.writelines(line + "\n" for line in filtered.unreadable)
            log.warning(
                "skipped %d unreadable line(s) of %s (kept in %s); the rest is restored",
                len(filtered.unreadable),
                recording,
                skipped,
            )
        recording.write_text("".join(line + "\n" for line in filtered.kept))
        moto.recorder("replay-recording")
    moto.recorder("start-recording")
    return filtered
