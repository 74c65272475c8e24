"""API Lambda: API Gateway REST proxy events -> routes -> pipeline functions.

Routes are registered from pipeline.api_routes.ROUTES, the table the OpenAPI document
(GET /openapi.json, explorer at GET /docs) is generated from."""

from __future__ import annotations

import base64
import hmac
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aws_lambda_powertools.event_handler as event_handler_package
from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.logging import correlation_paths

from lambdas.from_environment import Handler, handler_from_environment
from pipeline.api import embeddings as embeddings_api
from pipeline.api import images as images_api
from pipeline.api.json_body import parse_json
from pipeline.api.route_table import ROUTES, openapi_document
from pipeline.errors import ApiError
from pipeline.generation.bedrock import BedrockImages
from pipeline.generation.generate_now import ImageModel, generate_now
from pipeline.ingest.ingestor import Ingestor
from pipeline.lookup.on_demand import OnDemandQueries
from pipeline.lookup.similarity import SimilarityService
from pipeline.storage.embeddings_table import EmbeddingStore

logger = Logger(service="imgsim-api")
SWAGGER_ASSETS = Path(event_handler_package.__file__).parent / "openapi" / "swagger_ui"


def _json(status: int, body: Any) -> Response:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=body)


def _docs_html(spec: dict[str, Any]) -> str:
    """The Swagger UI page with its assets inline (the ones powertools ships): no CDN needed."""
    from aws_lambda_powertools.event_handler.openapi.swagger_ui import generate_swagger_html

    return generate_swagger_html(
        json.dumps(spec).replace("</", "<\\/"),
        (SWAGGER_ASSETS / "swagger-ui-bundle.min.js").read_text(encoding="utf-8"),
        (SWAGGER_ASSETS / "swagger-ui.min.css").read_text(encoding="utf-8"),
        "",
        None,
    )


def create_app(
    ingestor: Ingestor,
    embeddings: EmbeddingStore | None = None,
    similarity: SimilarityService | None = None,
) -> APIGatewayRestResolver:
    app = APIGatewayRestResolver()
    settings = ingestor.settings
    embeddings = embeddings or EmbeddingStore(settings)
    similarity = similarity or SimilarityService.from_settings(settings)
    queries = OnDemandQueries(similarity)
    bedrock = BedrockImages(settings)
    image_model = ImageModel(settings.image_model_id, settings.image_size, settings.image_size)
    spec = openapi_document(ROUTES, "imgsim", "0.1.0", api_key=bool(settings.api_keys))

    def raw_body() -> bytes:
        event = app.current_event
        body = event.body or ""
        return base64.b64decode(body) if event.is_base64_encoded else body.encode("utf-8")

    def json_body() -> dict[str, Any]:
        return parse_json(raw_body(), settings.limits.max_body_bytes)

    def query() -> dict[str, str]:
        return app.current_event.query_string_parameters or {}

    operations: dict[str, Callable[..., Any]] = {
        "health": lambda: {"status": "ok"},
        "generateImage": lambda: generate_now(query(), ingestor, bedrock, image_model),
        "postImage": lambda: images_api.store_upload(
            images_api.parse_upload(raw_body(), settings.limits), ingestor
        ),
        "getImage": lambda image_id: images_api.image_view(
            ingestor, image_id, settings.presign_expiry_seconds
        ),
        "getEmbedding": lambda embedding_id: _json(
            *embeddings_api.embedding_view(ingestor, embeddings, embedding_id)
        ),
        "getSimilarity": lambda: similarity.lookup(query()),
        "postEmbed": lambda: queries.embed(json_body()),
        "postSimilarityPair": lambda: queries.pair(json_body()),
        "postSimilarity": lambda: queries.similar_to_each(json_body()),
    }
    for route in ROUTES:
        guarded = _with_api_key(
            operations[route.operation_id], settings.api_keys, route.public, app
        )
        app.route(route.resolver_path, method=route.method)(guarded)

    @app.get("/openapi.json")
    def openapi_json() -> dict[str, Any]:
        return spec

    @app.get("/docs")
    def docs() -> Response:
        return Response(status_code=200, content_type="text/html", body=_docs_html(spec))

    @app.exception_handler(ApiError)
    def on_api_error(err: ApiError) -> Response:
        logger.info("request refused", extra={"status": err.status, "code": err.code})
        return _json(err.status, err.body())

    @app.exception_handler(Exception)
    def on_unexpected(exc: Exception) -> Response:
        logger.exception("request failed")
        return _json(
            500,
            ApiError(
                500, "internal_error", f"the request failed; see the logs ({type(exc).__name__})"
            ).body(),
        )

    @app.not_found
    def on_not_found(_: NotFoundError) -> Response:
        event = app.current_event
        allowed = allowed_methods(event.path)
        if allowed:
            response = _json(
                405,
                ApiError(
                    405,
                    "method_not_allowed",
                    f"{event.http_method} is not allowed on {event.path}; use {', '.join(allowed)}",
                ).body(),
            )
            response.headers["Allow"] = ", ".join(allowed)
            return response
        route = f"{event.http_method} {event.path}"
        return _json(404, ApiError(404, "route_not_found", f"no route {route}").body())

    return app


def allowed_methods(path: str) -> list[str]:
    """The methods the route table has for a concrete path (empty: no such path)."""
    methods = [
        r.method
        for r in ROUTES
        if re.fullmatch(re.sub(r"\\{[^/]+\\}", "[^/]+", re.escape(r.path)), path)
    ]
    extra = ["GET"] if path in ("/openapi.json", "/docs") else []
    return sorted(set(methods + extra))


def _with_api_key(
    operation: Callable[..., Any], keys: tuple[str, ...], public: bool, app: APIGatewayRestResolver
) -> Callable[..., Any]:
    """401 without x-api-key, 403 with one that is not configured (when keys are set)."""
    if public or not keys:
        return operation

    def guarded(*args: Any, **kwargs: Any) -> Any:
        given = app.current_event.headers.get("x-api-key") or ""
        if not given:
            raise ApiError(401, "api_key_missing", "send your API key in the x-api-key header")
        if not any(hmac.compare_digest(given, key) for key in keys):
            raise ApiError(403, "api_key_refused", "the API key is not valid")
        return operation(*args, **kwargs)

    return guarded


def make_handler(ingestor: Ingestor, similarity: SimilarityService | None = None) -> Handler:
    app = create_app(ingestor, similarity=similarity)

    @logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return app.resolve(event, context)

    return handler


# The handler_from_environment entry point: settings come from the function's environment.
handler = handler_from_environment(make_handler)
