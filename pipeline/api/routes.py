"""The REST API's routes, one typed function each.

powertools checks each request against the function's annotations before it runs (a failure
answers 400, see error_handlers.py) and generates the OpenAPI document from the same
annotations. To add a route, write one function here: its decorator with `responses=` for the
refusals it can answer (and `security=guard` unless it is public), parameters typed
`Annotated[..., Query(...)]` / `Path(...)` / `Header(...)` or a body model from models.py,
and a return model. The logic it calls lives in pipeline/ and receives typed values."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Header, Path, Query

from pipeline.api import embeddings as embeddings_api
from pipeline.api import images as images_api
from pipeline.api.dependencies import ApiDependencies
from pipeline.api.models import (
    DEDUPE_DESCRIPTION,
    EXACT_DESCRIPTION,
    PROMPT_DESCRIPTION,
    Embedding,
    EmbeddingQueued,
    EmbedRequest,
    GeneratedImage,
    Health,
    ImageRecord,
    ImageUpload,
    MultiQuery,
    MultiQueryResults,
    PairRequest,
    PairScore,
    SimilarityPage,
    StoredImage,
    Vector,
)
from pipeline.api.openapi import responses
from pipeline.api.security import requirement
from pipeline.api.telemetry import lookup_metrics
from pipeline.generation.generate_now import generate_now
from pipeline.lookup.similarity import MAX_K
from pipeline.storage.keys import IMAGE_ID_PATTERN

ImageIdPath = Annotated[str, Path(pattern=IMAGE_ID_PATTERN, description="an image id")]
PromptQuery = Annotated[str, Query(min_length=1, description=PROMPT_DESCRIPTION)]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="a retry with the same key gets the first answer back; nothing is redone",
    ),
]
IDEMPOTENCY_ERRORS = {
    409: "a request with this Idempotency-Key is still running",
    422: "this Idempotency-Key was used with a different request",
}
IMAGE_ERRORS = {
    400: "missing or invalid image or URL",
    413: "an image over 4.4 MB, or a body over 6,000,000 bytes",
    415: "not a jpg/png/bmp/webp image",
    503: "the embedding endpoint cannot serve right now",
}


def add_routes(app: APIGatewayRestResolver, api: ApiDependencies) -> None:
    settings = api.settings
    guard = requirement(settings.api_keys)  # what a route that needs a key declares
    guarded = guard is not None

    @app.get("/health", summary="Liveness", responses=responses("ok", {}))
    def health() -> Health:
        return Health()

    @app.get(
        "/images",
        summary="Generate one image for a prompt now",
        security=guard,
        responses=responses(
            "generated, stored, recorded and queued",
            {
                400: "empty or over-long prompt",
                **IDEMPOTENCY_ERRORS,
                429: "the image model is throttling",
                502: "the image model refused the prompt (reason) or failed",
            },
            guarded=guarded,
        ),
    )
    def generate_image(
        prompt: PromptQuery, idempotency_key: IdempotencyKey = None
    ) -> GeneratedImage:
        def generate() -> dict[str, Any]:
            return generate_now(prompt, api.ingestor, api.bedrock, api.image_model)

        answer = api.idempotency("GET /images", idempotency_key, {"prompt": prompt}, generate)
        return GeneratedImage.model_validate(answer)

    @app.post(
        "/images",
        summary="Store an image (base64) and queue it for embedding",
        security=guard,
        responses=responses(
            "stored and recorded",
            {
                400: "malformed request or image",
                **IDEMPOTENCY_ERRORS,
                415: "not an image / unsupported format",
            },
            guarded=guarded,
            body=True,
        ),
    )
    def post_image(upload: ImageUpload, idempotency_key: IdempotencyKey = None) -> StoredImage:
        def store() -> dict[str, Any]:
            decoded = images_api.decode_upload(upload.image_data, upload.prompt, settings.limits)
            return images_api.store_upload(decoded, api.ingestor)

        answer = api.idempotency("POST /images", idempotency_key, upload.model_dump(), store)
        return StoredImage.model_validate(answer)

    @app.get(
        "/images/<image_id>",
        summary="An image's record and a download URL",
        security=guard,
        responses=responses(
            "the record",
            {400: "invalid id", 404: "unknown image", 410: "the image was deleted"},
            guarded=guarded,
        ),
    )
    def get_image(image_id: ImageIdPath) -> ImageRecord:
        view = images_api.image_view(api.ingestor, image_id, settings.presign_expiry_seconds)
        return ImageRecord.model_validate(view)

    @app.get(
        "/embeddings/<embedding_id>",
        summary="An image's vector; queued for embedding with priority when it has none",
        security=guard,
        responses=responses(
            "the vector",
            {400: "invalid id", 404: "unknown image", 409: "embedding this image failed"},
            guarded=guarded,
            ok_models={
                200: ("the vector", Embedding),
                202: ("queued for embedding with priority", EmbeddingQueued),
            },
        ),
    )
    def get_embedding(embedding_id: ImageIdPath) -> Response[Embedding | EmbeddingQueued]:
        status, view = embeddings_api.embedding_view(api.ingestor, api.embeddings, embedding_id)
        body = Embedding.model_validate(view) if status == 200 else EmbeddingQueued(**view)
        return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=body)

    @app.get(
        "/similarity",
        summary="Top-k images of a prompt by cosine similarity to an embedded image",
        security=guard,
        responses=responses(
            "ranked results",
            {
                400: "missing or invalid parameter",
                404: "unknown image, or no embedded images for the prompt",
                409: "the image is not embedded yet",
            },
            guarded=guarded,
        ),
    )
    def get_similarity(
        image_id: Annotated[str, Query(pattern=IMAGE_ID_PATTERN, description="the query image")],
        prompt: PromptQuery,
        k: Annotated[int, Query(ge=1, le=MAX_K)] = 10,
        min_score: Annotated[float | None, Query(ge=-1, le=1)] = None,
        cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
        dedupe: Annotated[bool, Query(description=DEDUPE_DESCRIPTION)] = False,
        exact: Annotated[bool, Query(description=EXACT_DESCRIPTION)] = False,
    ) -> SimilarityPage:
        with lookup_metrics(api.similarity.cache):
            page = api.similarity.lookup(image_id, prompt, k, min_score, cursor, dedupe, exact)
        return SimilarityPage.model_validate(page)

    @app.post(
        "/embed",
        summary="Embed one image now (single-image mode)",
        security=guard,
        responses=responses("the vector", IMAGE_ERRORS, guarded=guarded, body=True),
    )
    def post_embed(request: EmbedRequest) -> Vector:
        return Vector.model_validate(api.queries.embed(request.img, request.url))

    @app.post(
        "/similarity/pair",
        summary="Similarity of two images, cosine mapped linearly to [0, 1]",
        security=guard,
        responses=responses("the similarity", IMAGE_ERRORS, guarded=guarded, body=True),
    )
    def post_similarity_pair(request: PairRequest) -> PairScore:
        first = api.queries.image(request.img_1, request.url_1, "img_1", "url_1")
        second = api.queries.image(request.img_2, request.url_2, "img_2", "url_2")
        return PairScore.model_validate(api.queries.pair(first, second))

    @app.post(
        "/similarity",
        summary="One top-k list per query image (base64 images and/or image_ids) for a prompt",
        security=guard,
        responses=responses(
            "one ranked list per input",
            {
                **IMAGE_ERRORS,
                404: "unknown image, or no embedded images for the prompt",
                409: "an image_id is not embedded yet",
            },
            guarded=guarded,
            body=True,
        ),
    )
    def post_similarity(query: MultiQuery) -> MultiQueryResults:
        lists = api.queries.similar_to_each(
            query.prompt, query.k, query.images, query.image_ids, query.exact
        )
        return MultiQueryResults.model_validate(lists)
