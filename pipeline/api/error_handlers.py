"""Every refusal in one shape, `{"error": {"code", "message"}}`: the project's ApiError,
powertools' request-validation errors (400), unknown routes (404) and wrong methods (405 with
Allow, from the resolver's own routes), idempotency conflicts, and anything unexpected (500)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, get_args

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyValidationError,
)
from pydantic_core.core_schema import ErrorType

from pipeline.api.telemetry import logger
from pipeline.errors import ApiError

# pydantic's own error types; any other type was raised by one of the API's validators with
# PydanticCustomError(code, message), and that code is the answer's (see models.py).
PYDANTIC_ERRORS = frozenset(get_args(ErrorType))
NOT_JSON = ApiError(415, "unsupported_media_type", "send the body as application/json")


def error_response(
    error: ApiError, headers: Mapping[str, str] | None = None
) -> Response[dict[str, Any]]:
    return Response(
        status_code=error.status,
        content_type=content_types.APPLICATION_JSON,
        body=error.body(),
        headers=dict(headers or {}),
    )


def validation_refusal(errors: Sequence[Mapping[str, Any]]) -> ApiError:
    """The 400 for the first thing wrong with a request, coded by the field it names:
    `invalid_<field>` for pydantic's checks, the validator's own code for the API's."""
    first = errors[0]
    kind, loc = str(first.get("type", "")), tuple(first.get("loc", ()))
    if kind == "json_invalid" or (kind in PYDANTIC_ERRORS and len(loc) < 2):
        return ApiError(400, "invalid_json", "request body must be a JSON object")
    if kind not in PYDANTIC_ERRORS:
        return ApiError(400, kind, str(first.get("msg", kind)))
    field = re.sub(r"\W+", "_", str(loc[1])).lower()
    where = ".".join(str(part) for part in loc[1:])
    return ApiError(400, f"invalid_{field}", f"{where}: {first.get('msg', 'is not valid')}")


def allowed_methods(app: APIGatewayRestResolver, path: str) -> list[str]:
    """The methods the resolver's routes answer on `path` (empty: no such path)."""
    routes = app._static_routes + app._dynamic_routes
    return sorted({route.method for route in routes if route.rule.match(path)})


def add_error_handlers(app: APIGatewayRestResolver) -> None:
    @app.exception_handler(ApiError)
    def on_api_error(error: ApiError) -> Response[dict[str, Any]]:
        logger.info("request refused", extra={"status": error.status, "code": error.code})
        return error_response(error)

    @app.exception_handler(RequestValidationError)
    def on_invalid_request(error: RequestValidationError) -> Response[dict[str, Any]]:
        errors = error.errors()
        if errors and tuple(errors[0].get("loc", ()))[:1] == ("response",):
            # the route's answer does not match its own response model: a bug, not the client's
            logger.error("response failed its model", extra={"errors": errors})
            return error_response(ApiError(500, "internal_error", "the answer failed its schema"))
        refusal = validation_refusal(errors)
        logger.info("request refused", extra={"status": 400, "code": refusal.code})
        return error_response(refusal)

    @app.exception_handler(RequestUnsupportedContentType)
    def on_unsupported_content_type(_: RequestUnsupportedContentType) -> Response[dict[str, Any]]:
        return error_response(NOT_JSON)

    @app.exception_handler(IdempotencyValidationError)
    def on_key_reused(_: IdempotencyValidationError) -> Response[dict[str, Any]]:
        return error_response(
            ApiError(
                422,
                "idempotency_key_reused",
                "this Idempotency-Key was used with a different request",
            )
        )

    @app.exception_handler(IdempotencyAlreadyInProgressError)
    def on_key_in_progress(_: IdempotencyAlreadyInProgressError) -> Response[dict[str, Any]]:
        return error_response(
            ApiError(
                409,
                "request_in_progress",
                "a request with this Idempotency-Key is still running; retry later",
            )
        )

    @app.exception_handler(UnicodeDecodeError)
    def on_undecodable_body(_: UnicodeDecodeError) -> Response[dict[str, Any]]:
        # powertools decodes the body as UTF-8 before parsing it as JSON
        return error_response(ApiError(400, "invalid_json", "request body must be UTF-8 JSON"))

    @app.exception_handler(ValueError)
    def on_value_error(error: ValueError) -> Response[dict[str, Any]]:
        content_type = app.current_event.headers.get("content-type") or ""
        if content_type.startswith("multipart/"):
            # how powertools refuses a multipart body without a boundary; the API reads JSON
            return error_response(NOT_JSON)
        return on_unexpected(error)

    @app.not_found
    def on_not_found(_: NotFoundError) -> Response[dict[str, Any]]:
        event = app.current_event
        allowed = allowed_methods(app, event.path)
        if not allowed:
            route = f"{event.http_method} {event.path}"
            return error_response(ApiError(404, "route_not_found", f"no route {route}"))
        message = f"{event.http_method} is not allowed on {event.path}; use {', '.join(allowed)}"
        return error_response(
            ApiError(405, "method_not_allowed", message), headers={"Allow": ", ".join(allowed)}
        )

    @app.exception_handler(Exception)
    def on_unexpected(error: Exception) -> Response[dict[str, Any]]:
        logger.exception("request failed")
        message = f"the request failed; see the logs ({type(error).__name__})"
        return error_response(ApiError(500, "internal_error", message))
