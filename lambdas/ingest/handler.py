"""Ingest Lambda: SQS batch of S3 notifications (objects created and removed) ->
pipeline.ingest, partial batch response.

Metrics go out as CloudWatch EMF lines on stdout (powertools `Metrics`), namespace `imgsim`:
one count per ingest outcome (`IngestRecorded`, `IngestFailed`, `IngestDuplicate`,
`IngestIgnored`, `IngestDeleted` for removals), `IngestErrors` for messages that raised
(retried, then the DLQ), all with dimension `service`, and `IngestRefused` per refusal
`code` (`not_an_image`, `truncated`, ...). The code is a dimension, not part of the name:
one metric that CloudWatch Metrics Insights sums or groups (`SELECT SUM(IngestRefused) FROM
imgsim GROUP BY code`) and that shows a new code without a dashboard change; the codes are a
short fixed list, so the dimension's cardinality stays small.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, single_metric
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas.from_environment import Handler, handler_from_environment
from pipeline.ingest.ingestor import Ingestor, IngestResult
from pipeline.ingest.notifications import object_events

SERVICE = "imgsim-ingest"
NAMESPACE = "imgsim"

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)


def count_outcome(result: IngestResult) -> None:
    metrics.add_metric(name=f"Ingest{result.outcome.title()}", unit=MetricUnit.Count, value=1)
    if result.outcome == "failed":
        code = (result.reason or "unknown").split(":", 1)[0]
        with single_metric(
            name="IngestRefused",
            unit=MetricUnit.Count,
            value=1,
            namespace=NAMESPACE,
            default_dimensions={"service": SERVICE},
        ) as refused:
            refused.add_dimension(name="code", value=code)


def make_handler(ingestor: Ingestor) -> Handler:
    """A Lambda handler bound to one Ingestor; messages that raise are reported as failed."""
    processor = BatchProcessor(event_type=EventType.SQS)

    def record_handler(record: SQSRecord) -> None:
        logger.set_correlation_id(record.message_id)
        try:
            events = object_events(record.body)
            for event in events:
                result = ingestor.handle(event)
                count_outcome(result)
                logger.info(
                    "ingest",
                    extra={
                        "key": event.key,
                        "event": event.kind,
                        "outcome": result.outcome,
                        "image_id": result.image_id,
                        "reason": result.reason,
                    },
                )
        except Exception:
            # the message is reported failed and comes back (then the DLQ): worth an alarm
            metrics.add_metric(name="IngestErrors", unit=MetricUnit.Count, value=1)
            raise

    @logger.inject_lambda_context(clear_state=True)
    @metrics.log_metrics
    def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
        return process_partial_response(
            event=event, record_handler=record_handler, processor=processor, context=context
        )

    return handler


# The handler_from_environment entry point: settings come from the function's environment.
handler = handler_from_environment(make_handler)
