"""Move a dead-letter queue's messages back to their source queue.

SQS's own redrive (StartMessageMoveTask) is what the console uses, but moto 5.2.5 does not
implement it, so this moves messages with receive, send, delete: each message is deleted from
the DLQ only after its copy was sent (a crash in between delivers it twice, which ingest
tolerates: it is idempotent per object version)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline import aws
from pipeline.settings import Settings


@dataclass(frozen=True)
class RedriveResult:
    source: str
    target: str
    moved: int


def redrive(
    settings: Settings,
    dlq: str | None = None,
    target: str | None = None,
    limit: int = 10_000,
    sqs: Any | None = None,
) -> RedriveResult:
    """Move up to `limit` messages from `dlq` (default: the ingest DLQ) to `target` (default:
    the queue the DLQ serves)."""
    sqs = sqs or aws.client(settings, "sqs")
    dlq = dlq or f"{settings.ingest_queue}-dlq"
    target = target or dlq.removesuffix("-dlq")
    source_url = sqs.get_queue_url(QueueName=dlq)["QueueUrl"]
    target_url = sqs.get_queue_url(QueueName=target)["QueueUrl"]
    moved = 0
    while moved < limit:
        batch = sqs.receive_message(
            QueueUrl=source_url,
            MaxNumberOfMessages=min(10, limit - moved),
            WaitTimeSeconds=0,
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not batch:
            break
        for message in batch:
            sqs.send_message(
                QueueUrl=target_url,
                MessageBody=message["Body"],
                **(
                    {"MessageAttributes": message["MessageAttributes"]}
                    if message.get("MessageAttributes")
                    else {}
                ),
            )
            sqs.delete_message(QueueUrl=source_url, ReceiptHandle=message["ReceiptHandle"])
            moved += 1
    return RedriveResult(source=dlq, target=target, moved=moved)
