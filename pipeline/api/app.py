"""The REST API as one powertools resolver: typed routes (routes.py), request and response
models (models.py), the API-key middleware (security.py), one error shape (error_handlers.py),
and the spec and explorer generated from the routes: GET /openapi.json and GET /docs (Swagger
UI with powertools' bundled assets inline, no CDN)."""

from __future__ import annotations

import base64
import json
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
from aws_lambda_powertools.event_handler.openapi.models import Server

from pipeline.api.deletion_routes import deletion_router
from pipeline.api.dependencies import ApiDependencies
from pipeline.api.error_handlers import add_error_handlers
from pipeline.api.gallery_routes import gallery_router
from pipeline.api.openapi import DESCRIPTION, TITLE, VERSION, Resolver
from pipeline.api.routes import add_routes
from pipeline.api.security import Middleware, api_key_middleware, security_schemes
from pipeline.errors import ApiError


def create_app(api: ApiDependencies) -> APIGatewayRestResolver:
    settings = api.settings
    app = Resolver(enable_validation=True, json_body_deserializer=json_body)
    app.use([api_key_middleware(settings.api_keys), body_limit(settings.limits.max_body_bytes)])
    add_routes(app, api)
    app.include_router(gallery_router(settings))
    app.include_router(deletion_router(api))
    add_error_handlers(app)
    schemes = security_schemes(settings.api_keys)
    app.enable_swagger(
        path="/docs",
        title=TITLE,
        version=VERSION,
        description=DESCRIPTION,
        security_schemes=schemes,
    )

    @app.get("/openapi.json", include_in_schema=False)
    def openapi_json() -> Response[str]:
        # the servers entry /docs gets too: the stage prefix when called through it
        base_path = app._get_base_path() or "/"
        spec = app.get_openapi_json_schema(
            title=TITLE,
            version=VERSION,
            description=DESCRIPTION,
            security_schemes=schemes,
            servers=[Server(url=base_path)],
        )
        return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=spec)

    return app


def json_body(text: str) -> Any:
    """A request body parsed as JSON; too deep a nesting is invalid JSON (a 400), not the
    parser's RecursionError (a 500)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply", text, 0) from None


def body_limit(limit: int) -> Middleware:
    """413 for a request body over `limit` bytes, on every route."""

    def refuse_large_bodies(
        app: APIGatewayRestResolver, next_middleware: NextMiddleware
    ) -> Response:
        event = app.current_event
        raw = event.body or ""
        size = len(base64.b64decode(raw)) if event.is_base64_encoded else len(raw.encode())
        if size > limit:
            raise ApiError(
                413, "payload_too_large", f"request body is {size} bytes; the limit is {limit}"
            )
        return next_middleware(app)

    return refuse_large_bodies
