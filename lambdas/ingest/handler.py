"""Ingest Lambda: SQS batch of S3 notifications -> pipeline.ingest, partial batch response."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from lambdas.from_environment import Handler, handler_from_environment
from pipeline.ingest.ingestor import Ingestor
from pipeline.ingest.notifications import object_created_events

logger = Logger(service="imgsim-ingest")


def make_handler(ingestor: Ingestor) -> Handler:
    """A Lambda handler bound to one Ingestor; messages that raise are reported as failed."""
    processor = BatchProcessor(event_type=EventType.SQS)

    def record_handler(record: SQSRecord) -> None:
        logger.set_correlation_id(record.message_id)
        for event in object_created_events(record.body):
            result = ingestor.ingest_event(event.bucket, event.key, event.etag)
            logger.info(
                "ingest",
                extra={
                    "key": event.key,
                    "outcome": result.outcome,
                    "image_id": result.image_id,
                    "reason": result.reason,
                },
            )

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return process_partial_response(
            event=event, record_handler=record_handler, processor=processor, context=context
        )

    return handler


# The handler_from_environment entry point: settings come from the function's environment.
handler = handler_from_environment(make_handler)
