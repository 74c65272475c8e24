"""API Lambda: API Gateway REST proxy events -> routes -> pipeline functions."""

from __future__ import annotations

import base64
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.logging import correlation_paths

from lambdas.entry import Handler, deployed
from pipeline import embeddings_api, images_api
from pipeline.api_errors import ApiError
from pipeline.embedding_records import EmbeddingStore
from pipeline.ingest import Ingestor
from pipeline.similarity import SimilarityService

logger = Logger(service="imgsim-api")


def _error(err: ApiError) -> Response:
    return Response(status_code=err.status, content_type=content_types.APPLICATION_JSON,
                    body=err.body())


def create_app(ingestor: Ingestor, embeddings: EmbeddingStore | None = None,
               similarity: SimilarityService | None = None) -> APIGatewayRestResolver:
    app = APIGatewayRestResolver()
    settings = ingestor.settings
    embeddings = embeddings or EmbeddingStore(settings)
    similarity = similarity or SimilarityService.from_settings(settings)

    def raw_body() -> bytes:
        event = app.current_event
        body = event.body or ""
        return base64.b64decode(body) if event.is_base64_encoded else body.encode("utf-8")

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/images")
    def post_image() -> dict[str, Any]:
        upload = images_api.parse_upload(raw_body(), settings.limits)
        return images_api.store_upload(upload, ingestor)

    @app.get("/images/<image_id>")
    def get_image(image_id: str) -> dict[str, Any]:
        return images_api.image_view(ingestor, image_id, settings.presign_expiry_seconds)

    @app.get("/embeddings/<embedding_id>")
    def get_embedding(embedding_id: str) -> Response:
        status, body = embeddings_api.embedding_view(ingestor, embeddings, embedding_id)
        return Response(status_code=status, content_type=content_types.APPLICATION_JSON,
                        body=body)

    @app.get("/similarity")
    def get_similarity() -> dict[str, Any]:
        return similarity.lookup(app.current_event.query_string_parameters or {})

    @app.exception_handler(ApiError)
    def on_api_error(err: ApiError) -> Response:
        logger.info("request refused", extra={"status": err.status, "code": err.code})
        return _error(err)

    @app.not_found
    def on_not_found(_: NotFoundError) -> Response:
        event = app.current_event
        route = f"{event.http_method} {event.path}"
        return _error(ApiError(404, "route_not_found", f"no route {route}"))

    return app


def make_handler(ingestor: Ingestor, similarity: SimilarityService | None = None) -> Handler:
    app = create_app(ingestor, similarity=similarity)

    @logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return app.resolve(event, context)

    return handler


# The deployed entry point: settings come from the function's environment.
handler = deployed(make_handler)
