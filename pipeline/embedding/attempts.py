"""The one retry path of an image's embedding, and its bound.

The embed queue is a doorbell, not a work queue: the watcher's trigger (the amazon provider's
`SqsSensorTrigger`) deletes every message as it receives it, so SQS never sees a failure and
the embed queue has no dead-letter queue. The attempts are counted where the truth is, on the
image's record: each run that plans a pending version counts one (`embed_attempts`, once per
run id, so a retried `gather` counts nothing more), however the run found the image (its own
message, another image's message, the safety-net schedule).

A run that fails for good leaves its images pending; a later run plans them again, no sooner
than `RETRY_AFTER_MINUTES` after their last attempt began (less than the schedule's 15 minutes,
so the next scheduled run retries them at the latest). After `MAX_ATTEMPTS` attempts the image
is failed with the reason `embedding_gave_up: ...` on its record: by the failed run's failure
callback (the reason names the task and its error), else by the next run's `gather`. An image
the model refused (`embedding_failed: ...`) fails at once: retrying cannot help. Once the cause
is fixed, `redrive_dlq` with queue `embed` puts the images that gave up back to pending.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pipeline.storage.dynamodb_codec import timestamp

MAX_ATTEMPTS = 4  # runs that may plan one image version
RETRY_AFTER_MINUTES = 10  # between two of them: 4 attempts span 30 minutes at least
GAVE_UP = "embedding_gave_up"
REASON_CHARS = 500  # of the last error, kept on the record


class Step(StrEnum):
    PLAN = "plan"
    WAIT = "wait"  # attempted less than the retry delay ago
    GIVE_UP = "give_up"


def next_step(record: Mapping[str, Any], run_id: str, retry_before: str | None) -> Step:
    """What a run does with a pending record: plan it, leave it for a later run, or give up.
    `retry_before`: the time before which the last attempt must have begun (None: any)."""
    if record.get("embed_attempt_run") == run_id:
        return Step.PLAN  # this run counted it already: its gather is being retried
    attempts = int(record.get("embed_attempts", 0))
    if attempts >= MAX_ATTEMPTS:
        return Step.GIVE_UP
    if attempts and retry_before is not None and record["embed_attempted_at"] >= retry_before:
        return Step.WAIT
    return Step.PLAN


def retry_before(now: datetime, minutes: float) -> str:
    """The `retry_before` of a run at `now` that retries no sooner than `minutes`."""
    return timestamp(now - timedelta(minutes=minutes))


def gave_up_reason(attempts: int, last_run: str, cause: str = "") -> str:
    """The `error` of a record that gave up: how many runs, the last one, and why it failed."""
    reason = f"{GAVE_UP}: {attempts} runs did not embed it; the last was {last_run}"
    return f"{reason}: {cause[:REASON_CHARS]}" if cause else reason
