"""The REST API's routes as data: the Lambda registers its handlers from this table and the
OpenAPI document is generated from it, so the spec cannot drift from the routes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ERROR = {"$ref": "#/components/schemas/Error"}
OBJECT = {"type": "object"}


@dataclass(frozen=True)
class Param:
    name: str
    where: str  # query | path
    schema: dict[str, Any]
    required: bool = False
    description: str = ""


@dataclass(frozen=True)
class RouteDoc:
    operation_id: str
    method: str
    path: str  # OpenAPI style: /images/{image_id}
    summary: str
    responses: dict[int, str]
    params: tuple[Param, ...] = ()
    body: dict[str, Any] | None = None
    ok_schema: dict[str, Any] = field(default_factory=lambda: OBJECT)
    public: bool = False  # no API key needed

    @property
    def resolver_path(self) -> str:
        """powertools spells path parameters <name>."""
        return self.path.replace("{", "<").replace("}", ">")


ID_SCHEMA = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$"}
B64 = {"type": "string", "description": "base64 image (jpg, png, bmp, webp) or a data: URL"}
URL = {"type": "string", "description": "s3://<bucket>/<key>, or https:// when enabled"}
VECTOR = {
    "type": "object",
    "properties": {
        "model_id": {"type": "string"},
        "dim": {"type": "integer"},
        "embedding": {"type": "array", "items": {"type": "number"}},
    },
}
IMAGE_ERRORS = {
    400: "missing or invalid image or URL",
    413: "image over 6 MB",
    415: "not a jpg/png/bmp/webp image",
    503: "the embedding endpoint cannot serve right now",
}

ROUTES: tuple[RouteDoc, ...] = (
    RouteDoc("health", "GET", "/health", "Liveness", {200: "ok"}, public=True),
    RouteDoc(
        "generateImage",
        "GET",
        "/images",
        "Generate one image for a prompt now",
        {
            200: "generated, stored, recorded and queued",
            400: "empty or over-long prompt",
            429: "the image model is throttling",
            502: "the image model refused the prompt (reason) or failed",
        },
        params=(
            Param("prompt", "query", {"type": "string", "minLength": 1, "maxLength": 1000}, True),
        ),
        ok_schema={
            "type": "object",
            "required": ["image_id"],
            "properties": {
                "base_prompt": {"type": "string"},
                "modified_prompt": {"type": "string"},
                "image_id": {"type": "string"},
                "model_id": {"type": "string"},
                "seed": {"type": "integer"},
            },
        },
    ),
    RouteDoc(
        "postImage",
        "POST",
        "/images",
        "Store an image (base64) and queue it for embedding",
        {
            200: "stored and recorded",
            400: "malformed request or image",
            413: "body over 6 MB",
            415: "not an image / unsupported format",
        },
        body={
            "type": "object",
            "required": ["image_data"],
            "properties": {
                "image_data": {"type": "string", "description": "base64 or a data: URL"},
                "prompt": {"type": "string", "maxLength": 1000},
            },
        },
        ok_schema={
            "type": "object",
            "required": ["image_id"],
            "properties": {
                "image_id": {"type": "string"},
                "s3_key": {"type": "string"},
                "status": {"type": "string"},
            },
        },
    ),
    RouteDoc(
        "getImage",
        "GET",
        "/images/{image_id}",
        "An image's record and a download URL",
        {200: "the record", 400: "invalid id", 404: "unknown image"},
        params=(Param("image_id", "path", ID_SCHEMA, True),),
    ),
    RouteDoc(
        "getEmbedding",
        "GET",
        "/embeddings/{embedding_id}",
        "An image's vector",
        {
            200: "the vector",
            202: "queued for embedding with priority",
            400: "invalid id",
            404: "unknown image",
            409: "embedding this image failed",
        },
        params=(Param("embedding_id", "path", ID_SCHEMA, True),),
    ),
    RouteDoc(
        "getSimilarity",
        "GET",
        "/similarity",
        "Top-k images of a prompt by cosine similarity to an embedded image",
        {
            200: "ranked results",
            400: "missing or invalid parameter",
            404: "unknown image, or no embedded images for the prompt",
            409: "the image is not embedded yet",
        },
        params=(
            Param("image_id", "query", ID_SCHEMA, True, "the query image"),
            Param(
                "prompt",
                "query",
                {"type": "string", "minLength": 1, "maxLength": 1000},
                True,
                "normalized: trimmed, whitespace collapsed, lowercased",
            ),
            Param("k", "query", {"type": "integer", "minimum": 1, "maximum": 100, "default": 10}),
            Param("min_score", "query", {"type": "number", "minimum": -1, "maximum": 1}),
            Param("cursor", "query", {"type": "string"}, False, "next_cursor of the previous page"),
        ),
        ok_schema={
            "type": "object",
            "properties": {
                "image_id": {"type": "string"},
                "prompt": {"type": "string"},
                "model_id": {"type": "string"},
                "k": {"type": "integer"},
                "candidates": {"type": "integer"},
                "next_cursor": {"type": ["string", "null"]},
                "results": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "image_id": {"type": "string"},
                            "similarity": {"type": "number"},
                            "url": {"type": "string"},
                        },
                    },
                },
            },
        },
    ),
    RouteDoc(
        "postEmbed",
        "POST",
        "/embed",
        "Embed one image now (single-image mode)",
        {200: "the vector", **IMAGE_ERRORS},
        body={"type": "object", "properties": {"img": B64, "url": URL}},
        ok_schema=VECTOR,
    ),
    RouteDoc(
        "postSimilarityPair",
        "POST",
        "/similarity/pair",
        "Similarity of two images, cosine mapped linearly to [0, 1]",
        {200: "the similarity", **IMAGE_ERRORS},
        body={
            "type": "object",
            "properties": {"img_1": B64, "url_1": URL, "img_2": B64, "url_2": URL},
        },
        ok_schema={
            "type": "object",
            "properties": {
                "similarity": {"type": "number", "minimum": 0, "maximum": 1},
                "cosine": {"type": "number"},
                "model_id": {"type": "string"},
            },
        },
    ),
    RouteDoc(
        "postSimilarity",
        "POST",
        "/similarity",
        "One top-k list per query image (base64 images and/or image_ids) for a prompt",
        {
            200: "one ranked list per input",
            **IMAGE_ERRORS,
            404: "unknown image, or no embedded images for the prompt",
            409: "an image_id is not embedded yet",
        },
        body={
            "type": "object",
            "required": ["prompt"],
            "properties": {
                "prompt": {"type": "string", "minLength": 1, "maxLength": 1000},
                "k": {"type": "integer", "minimum": 1, "maximum": 100, "default": 10},
                "images": {"type": "array", "items": B64, "maxItems": 8},
                "image_ids": {"type": "array", "items": ID_SCHEMA, "maxItems": 8},
            },
        },
    ),
)


def openapi_document(
    routes: tuple[RouteDoc, ...], title: str, version: str, api_key: bool
) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        operation: dict[str, Any] = {
            "operationId": route.operation_id,
            "summary": route.summary,
            "responses": {},
        }
        if route.params:
            operation["parameters"] = [
                {
                    "name": p.name,
                    "in": p.where,
                    "required": p.required or p.where == "path",
                    "schema": p.schema,
                    **({"description": p.description} if p.description else {}),
                }
                for p in route.params
            ]
        if route.body:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": route.body}},
            }
        for status, description in sorted(route.responses.items()):
            schema = route.ok_schema if status < 300 else ERROR
            operation["responses"][str(status)] = {
                "description": description,
                "content": {"application/json": {"schema": schema}},
            }
        if api_key and not route.public:
            operation["security"] = [{"ApiKey": []}]
            operation["responses"]["401"] = {
                "description": "API key missing",
                "content": {"application/json": {"schema": ERROR}},
            }
            operation["responses"]["403"] = {
                "description": "API key not accepted",
                "content": {"application/json": {"schema": ERROR}},
            }
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    components: dict[str, Any] = {
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["error"],
                "properties": {
                    "error": {
                        "type": "object",
                        "required": ["code", "message"],
                        "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                    }
                },
            }
        }
    }
    if api_key:
        components["securitySchemes"] = {
            "ApiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"}
        }
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": components,
    }
