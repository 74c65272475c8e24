"""Send failed work back once its cause is fixed: the ingest DLQ's messages to the ingest queue,
and the images whose embedding ran out of attempts back to pending.

On AWS, SQS moves the DLQ's messages itself (`StartMessageMoveTask`, what the console's "Start
DLQ redrive" does): asynchronously, at SQS's pace, nothing passing through this process; a move
task already running for the DLQ is reported instead of starting a second one (SQS allows one).
An endpoint that does not implement it (moto 5.2.5 answers an HTML 500 that names no AWS error)
gets the fallback: receive with long polling, send, delete, until the DLQ's approximate count is
zero. A message is deleted only after its copy was sent: a crash in between delivers it twice,
which ingest tolerates (it is idempotent per object version).

The embed queue has no DLQ (see `pipeline.embedding.attempts`): its redrive reopens the images
that gave up and rings the queue for each."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botocore.config import Config
from botocore.exceptions import ClientError

from pipeline import aws
from pipeline.embedding.attempts import GAVE_UP
from pipeline.settings import Settings
from pipeline.storage.embed_queue import EmbedQueue
from pipeline.storage.images_table import ImageStore

LONG_POLL_SECONDS = 2
# Unknown-action answers: the Query protocol's, the JSON protocol's, and the generic one.
NOT_IMPLEMENTED_CODES = frozenset({"InvalidAction", "UnknownOperationException", "NotImplemented"})
# One retry: moto's 500 is not worth botocore's five adaptive attempts before the fallback.
_PROBE_RETRIES = Config(retries={"mode": "standard", "total_max_attempts": 2})


@dataclass(frozen=True)
class RedriveResult:
    source: str
    target: str
    method: str  # "move_task" (SQS moves them), "receive_send_delete", or "reopen" (images)
    moved: int  # messages moved, or to be moved by the task (approximate); images reopened
    task_handle: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "target": self.target,
            "method": self.method,
            "moved": self.moved,
            "task_handle": self.task_handle,
        }


def not_implemented(error: ClientError) -> bool:
    """The endpoint does not implement the action: an unknown-action error, or a server error
    that names no AWS error (botocore then reports the HTTP status as the code), as moto's HTML
    500 from its NotImplementedError; AWS names every error it returns. A refusal is never
    taken for it (moto's AccessDenied on a JSON-protocol call also comes unnamed, as a 403)."""
    code = str(error.response.get("Error", {}).get("Code", ""))
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code in NOT_IMPLEMENTED_CODES or (status in (500, 501) and code == str(status))


def redrive(
    settings: Settings,
    dlq: str | None = None,
    target: str | None = None,
    sqs: Any | None = None,
    probe: Any | None = None,
) -> RedriveResult:
    """Move every message of `dlq` (default: the ingest DLQ) to `target` (default: the queue
    the DLQ serves). `probe` asks SQS for a move task (default: a client that retries once)."""
    probe = probe or aws.client(settings, "sqs", config=_PROBE_RETRIES)
    sqs = sqs or aws.client(settings, "sqs")
    dlq = dlq or f"{settings.ingest_queue}-dlq"
    target = target or dlq.removesuffix("-dlq")
    source_url = sqs.get_queue_url(QueueName=dlq)["QueueUrl"]
    target_url = sqs.get_queue_url(QueueName=target)["QueueUrl"]
    waiting = approximate_count(sqs, source_url)
    handle = _move_task(probe, _arn(sqs, source_url), _arn(sqs, target_url))
    if handle is not None:
        return RedriveResult(dlq, target, "move_task", waiting, handle)
    return RedriveResult(dlq, target, "receive_send_delete", _drain(sqs, source_url, target_url))


def approximate_count(sqs: Any, url: str) -> int:
    """The queue's visible messages, as SQS estimates them."""
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"])


def _arn(sqs: Any, url: str) -> str:
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return str(attributes["Attributes"]["QueueArn"])


def _move_task(sqs: Any, source_arn: str, target_arn: str) -> str | None:
    """The handle of the DLQ's running move task, or of one started now; None when the
    endpoint implements no move tasks."""
    try:
        tasks = sqs.list_message_move_tasks(SourceArn=source_arn, MaxResults=1)["Results"]
    except ClientError as error:
        if not_implemented(error):
            return None
        raise
    if tasks and tasks[0].get("Status") in ("RUNNING", "CANCELLING"):  # SQS allows one
        return str(tasks[0]["TaskHandle"])
    started = sqs.start_message_move_task(SourceArn=source_arn, DestinationArn=target_arn)
    return str(started["TaskHandle"])


def _drain(sqs: Any, source_url: str, target_url: str) -> int:
    """Receive (long polling), send, delete until a receive finds nothing and the DLQ's
    approximate count is zero; returns the number moved."""
    moved = 0
    while True:
        batch = sqs.receive_message(
            QueueUrl=source_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=LONG_POLL_SECONDS,
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        for message in batch:
            attributes = message.get("MessageAttributes")
            sqs.send_message(
                QueueUrl=target_url,
                MessageBody=message["Body"],
                **({"MessageAttributes": attributes} if attributes else {}),
            )
            sqs.delete_message(QueueUrl=source_url, ReceiptHandle=message["ReceiptHandle"])
            moved += 1
        if not batch and approximate_count(sqs, source_url) == 0:
            return moved


def reopen_given_up(
    settings: Settings, images: ImageStore | None = None, queue: EmbedQueue | None = None
) -> RedriveResult:
    """Every image whose embedding gave up back to pending, its attempts cleared, and one embed
    request each (should a send fail, the safety-net schedule still finds the image)."""
    images = images or ImageStore(settings)
    queue = queue or EmbedQueue(settings)
    reopened = 0
    for record in images.failed_with(GAVE_UP):
        if images.reopen_failed(record["image_id"], record["etag"], GAVE_UP):
            queue.request_embedding(record["image_id"], record["s3_key"], record["etag"])
            reopened += 1
    return RedriveResult(GAVE_UP, settings.embed_queue, "reopen", reopened)


def redrive_named(settings: Settings, queue: str) -> RedriveResult:
    """What `redrive_dlq` and `imgsim redrive` do for `queue`: "ingest" (its DLQ) or "embed"
    (the images that gave up)."""
    if queue == "ingest":
        return redrive(settings)
    if queue == "embed":
        return reopen_given_up(settings)
    raise ValueError(f"no redrive for queue {queue!r}: ingest or embed")
