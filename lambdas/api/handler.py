"""API Lambda: API Gateway REST proxy events -> the powertools resolver of pipeline/api."""

from __future__ import annotations

import threading
from typing import Any

from aws_lambda_powertools.logging import correlation_paths

from lambdas.from_environment import Handler, handler_from_environment
from pipeline.api.app import create_app
from pipeline.api.services import ApiServices
from pipeline.api.telemetry import logger, metrics
from pipeline.ingest.ingestor import Ingestor
from pipeline.lookup.similarity import SimilarityService


def make_handler(ingestor: Ingestor, similarity: SimilarityService | None = None) -> Handler:
    api = ApiServices.from_ingestor(ingestor, similarity)
    app = create_app(api)
    # A Lambda container serves one request at a time, and the resolver keeps the request it
    # is serving on itself; the local API's threads take turns the same way.
    one_at_a_time = threading.Lock()

    @logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
    @metrics.log_metrics
    def resolve(event: dict[str, Any], context: Any) -> dict[str, Any]:
        api.idempotency.register(context)
        return app.resolve(event, context)

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        with one_at_a_time:
            return resolve(event, context)

    return handler


# The deployed entry point: settings come from the function's environment.
handler = handler_from_environment(make_handler)
