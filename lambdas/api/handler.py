"""API Lambda: API Gateway REST proxy events -> the powertools resolver of pipeline/api."""

from __future__ import annotations

import threading
from typing import Any

from aws_lambda_powertools.logging import correlation_paths

from lambdas.from_environment import Handler, handler_from_environment
from pipeline.api.app import create_app
from pipeline.api.dependencies import ApiDependencies
from pipeline.api.telemetry import logger, metrics
from pipeline.ingest.ingestor import Ingestor
from pipeline.lookup.similarity import SimilarityService


def make_handler(ingestor: Ingestor, similarity: SimilarityService | None = None) -> Handler:
    api = ApiDependencies.from_ingestor(ingestor, similarity)
    # The resolver keeps the request it serves on itself: a Lambda container serves one at a
    # time, and each thread of the local API gets a resolver of its own over the same
    # dependencies (stores, clients and the candidate cache are shared and thread-safe).
    resolvers = threading.local()
    resolvers.app = create_app(api)  # for this thread now: Lambda's init phase builds it

    @logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
    @metrics.log_metrics
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        if not hasattr(resolvers, "app"):
            resolvers.app = create_app(api)
        api.idempotency.register(context)
        return resolvers.app.resolve(event, context)

    return handler


# The deployed entry point: settings come from the function's environment.
handler = handler_from_environment(make_handler)
