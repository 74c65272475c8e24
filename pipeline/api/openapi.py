"""How the routes document their answers, and the one adjustment the generated spec needs.

powertools generates the OpenAPI document from the routes: parameters and bodies from their
types, the success answer from the return annotation, the refusals from each route's
`responses=` (built here, all in the one error shape)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.event_handler.openapi.models import OpenAPI
from aws_lambda_powertools.event_handler.openapi.models import Response as OpenAPIResponseModel
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from pydantic import BaseModel

from pipeline.api.models import ErrorBody

JSON = "application/json"
TITLE = "imgsim"
VERSION = "0.1.0"
DESCRIPTION = (
    "Image generation and image similarity search. Every refusal is "
    '`{"error": {"code", "message"}}`; request validation failures are 400.'
)
BODY_ERRORS = {
    413: "request body over 6,000,000 bytes",
    415: "the body is not JSON (Content-Type)",
}
KEY_ERRORS = {401: "API key missing (x-api-key)", 403: "API key not accepted"}
_POWERTOOLS_422 = "#/components/schemas/HTTPValidationError"


def responses(
    ok: str,
    errors: Mapping[int, str],
    *,
    guarded: bool = False,
    body: bool = False,
    ok_models: Mapping[int, tuple[str, type[BaseModel]]] | None = None,
) -> dict[int, OpenAPIResponse]:
    """A route's `responses=`: 200 (schema from its return annotation, or `ok_models` per
    status), its refusals, 413/415 when it reads a body, 401/403 when it needs an API key."""
    documented: dict[int, OpenAPIResponse] = {200: {"description": ok}}
    for status, (description, model) in (ok_models or {}).items():
        documented[status] = {"description": description, "content": {JSON: {"model": model}}}
    refusals = dict(errors)
    for status, description in {
        **(BODY_ERRORS if body else {}),
        **(KEY_ERRORS if guarded else {}),
    }.items():
        refusals[status] = (
            f"{refusals[status]}; {description}" if status in refusals else description
        )
    for status, description in sorted(refusals.items()):
        documented[status] = {"description": description, "content": {JSON: {"model": ErrorBody}}}
    return documented


class Resolver(APIGatewayRestResolver):
    """powertools documents a 422 "Validation Error" on every validated route; this API answers
    those failures with 400 in its own error shape (error_handlers.py), so its spec drops them."""

    def get_openapi_schema(self, **options: Any) -> OpenAPI:
        schema = super().get_openapi_schema(**options)
        for item in (schema.paths or {}).values():
            for operation in (item.get, item.put, item.post, item.delete, item.patch):
                if operation is not None and operation.responses:
                    answer = operation.responses.get(422)
                    if _is_powertools_validation_error(answer):
                        del operation.responses[422]
        if schema.components is not None and schema.components.schemas:
            for name in ("HTTPValidationError", "ValidationError", "ResponseValidationError"):
                schema.components.schemas.pop(name, None)
        return schema


def _is_powertools_validation_error(answer: Any) -> bool:
    if not isinstance(answer, OpenAPIResponseModel) or not answer.content:
        return False
    media = answer.content.get(JSON)
    schema = media.schema_ if media is not None else None
    return getattr(schema, "ref", None) == _POWERTOOLS_422
