"""The event pump: what a Lambda SQS event source mapping does, on loopback.

It long-polls the ingest queue, hands each batch to the ingest handler as a real SQS event
(records wrapping the S3 notification bodies), and deletes only the messages the handler
did not list in `batchItemFailures`. Failed messages become visible again after the
queue's visibility timeout, and the queue's redrive policy moves them to the DLQ.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from pipeline import aws
from pipeline.local.lambda_context import LocalLambdaContext
from pipeline.settings import Settings

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
log = logging.getLogger(__name__)


def lambda_message_attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    """SQS API message attributes in the shape Lambda delivers them."""
    return {
        name: {
            "stringValue": value.get("StringValue"),
            "binaryValue": value.get("BinaryValue"),
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": value.get("DataType"),
        }
        for name, value in attributes.items()
    }


def sqs_event(messages: list[dict[str, Any]], queue_arn: str, region: str) -> dict[str, Any]:
    """The Lambda event for a batch of received SQS messages."""
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "messageAttributes": lambda_message_attributes(m.get("MessageAttributes", {})),
                "md5OfBody": m.get("MD5OfBody"),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            }
            for m in messages
        ]
    }


class EventPump:
    def __init__(
        self, settings: Settings, handler: Handler, batch_size: int = 10, client: Any | None = None
    ) -> None:
        self._settings = settings
        self._handler = handler
        self._batch_size = batch_size
        self._sqs = client or aws.client(settings, "sqs")
        self._url = self._sqs.get_queue_url(QueueName=settings.ingest_queue)["QueueUrl"]
        self._arn = self._sqs.get_queue_attributes(QueueUrl=self._url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll_once(self, wait_seconds: int = 1) -> int:
        """Receive one batch, invoke the handler, delete the successes. Returns batch size."""
        received = self._sqs.receive_message(
            QueueUrl=self._url,
            MaxNumberOfMessages=self._batch_size,
            WaitTimeSeconds=wait_seconds,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not received:
            return 0
        event = sqs_event(received, self._arn, self._settings.region)
        try:
            response = self._handler(event, LocalLambdaContext("imgsim-ingest-local")) or {}
        except Exception:
            log.exception("ingest handler failed; the whole batch will be retried")
            return len(received)
        failed = {f["itemIdentifier"] for f in response.get("batchItemFailures", [])}
        done = [m for m in received if m["MessageId"] not in failed]
        for start in range(0, len(done), 10):
            self._sqs.delete_message_batch(
                QueueUrl=self._url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                    for i, m in enumerate(done[start : start + 10])
                ],
            )
        return len(received)

    def drain(self, max_batches: int = 1000) -> int:
        """Poll until the queue has nothing visible; returns how many messages were handled."""
        total = 0
        for _ in range(max_batches):
            count = self.poll_once(wait_seconds=0)
            if count == 0:
                return total
            total += count
        return total

    def start(self, wait_seconds: int = 5) -> EventPump:
        def run() -> None:
            while not self._stop.is_set():
                try:
                    self.poll_once(wait_seconds)
                except Exception:
                    log.exception("event pump poll failed")
                    self._stop.wait(1)

        self._thread = threading.Thread(target=run, name="event-pump", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
