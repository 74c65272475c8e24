"""The API-key check: a middleware over every route that declares the ApiKey security
requirement in the spec (all but /health, /docs and the spec, and only when keys are set)."""

from __future__ import annotations

import hmac
from collections.abc import Callable

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
from aws_lambda_powertools.event_handler.openapi.models import APIKey, APIKeyIn, SecurityScheme

from pipeline.errors import ApiError

SCHEME = "ApiKey"
HEADER = "x-api-key"
Middleware = Callable[[APIGatewayRestResolver, NextMiddleware], Response]


def security_schemes(keys: tuple[str, ...]) -> dict[str, SecurityScheme] | None:
    """The scheme the spec declares, when keys are configured."""
    if not keys:
        return None
    scheme = APIKey.model_validate(
        {"in": APIKeyIn.header, "name": HEADER, "description": "one of IMGSIM_API_KEYS"}
    )
    return {SCHEME: scheme}


def requirement(keys: tuple[str, ...]) -> list[dict[str, list[str]]] | None:
    """What a guarded route declares as `security=`: nothing when no keys are configured."""
    return [{SCHEME: []}] if keys else None


def api_key_middleware(keys: tuple[str, ...]) -> Middleware:
    """401 without x-api-key, 403 with one that is not configured, on routes that declare it."""

    def require_api_key(app: APIGatewayRestResolver, next_middleware: NextMiddleware) -> Response:
        route = app.context.get("_route")  # the matched route; its `security` is the spec's
        if route is not None and route.security:
            given = app.current_event.headers.get(HEADER) or ""
            if not given:
                raise ApiError(401, "api_key_missing", f"send your API key in the {HEADER} header")
            # any text compares as bytes: a non-ASCII or lone-surrogate header is just wrong
            given_bytes = given.encode("utf-8", "surrogatepass")
            if not any(hmac.compare_digest(given_bytes, key.encode()) for key in keys):
                raise ApiError(403, "api_key_refused", "the API key is not valid")
        return next_middleware(app)

    return require_api_key
