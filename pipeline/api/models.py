"""The API's request and response bodies. powertools validates requests against them and
generates the OpenAPI document from them, so the spec and the checks cannot drift apart.

A validator that raises `PydanticCustomError(code, message)` chooses the API error code of its
refusal (see error_handlers.py); pydantic's own refusals become `invalid_<field>`."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, model_validator
from pydantic_core import PydanticCustomError

from pipeline.lookup.on_demand import MAX_QUERY_IMAGES
from pipeline.lookup.similarity import MAX_K
from pipeline.storage.keys import IMAGE_ID_PATTERN

ImageId = Annotated[str, Field(pattern=IMAGE_ID_PATTERN, description="an image id")]
Base64Image = Annotated[
    str, Field(min_length=1, description="base64 image (jpg, png, bmp, webp) or a data: URL")
]
ImageUrl = Annotated[
    str, Field(min_length=1, description="s3://<bucket>/<key>, or https:// when enabled")
]
RANKING_DESCRIPTION = (
    "what ranked the prompt's candidates: `exact` (a scan of every vector) or `hnsw` (the "
    "prompt's vector index, with the newest vectors scanned exactly beside it)"
)
EXACT_DESCRIPTION = "rank by the exact scan even where the prompt has a vector index"
DEDUPE_DESCRIPTION = (
    "one image per near-duplicate group: a group's first image stands for its copies "
    "(duplicate_of, near_duplicate_of); copies of the query image are left out"
)
PROMPT_DESCRIPTION = (
    "normalized: trimmed, whitespace collapsed, lowercased; at most IMGSIM_MAX_PROMPT_CHARS "
    "(default 1000) characters"
)


def absent() -> Any:
    """An optional attribute that stays out of the JSON when the record lacks it (no `null`)."""
    return Field(default=None, exclude_if=lambda value: value is None)


# ---------------------------------------------------------------- errors and health
class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    """Every refusal: `{"error": {"code", "message"}}`."""

    error: ErrorDetail


class Health(BaseModel):
    status: Literal["ok"] = "ok"


# ---------------------------------------------------------------- images
class ImageUpload(BaseModel):
    image_data: str = Field(description="base64 image or a data: URL")
    prompt: str | None = Field(default=None, description=PROMPT_DESCRIPTION)

    @model_validator(mode="before")
    @classmethod
    def _image_data_given(cls, data: Any) -> Any:
        given = data.get("image_data") if isinstance(data, dict) else None
        if not isinstance(given, str) or not given:
            raise PydanticCustomError(
                "missing_image_data", "image_data (base64 string) is required"
            )
        return data


class StoredImage(BaseModel):
    image_id: str
    s3_key: str
    status: Literal["pending"]


class GeneratedImage(BaseModel):
    base_prompt: str
    modified_prompt: str
    image_id: str
    model_id: str
    seed: int


class ImageRecord(BaseModel):
    """The public fields of an Images item and a presigned download URL."""

    image_id: str
    created_at: str | None = absent()
    prompt: str | None = absent()
    modified_prompt: str | None = absent()
    source: str | None = absent()
    s3_key: str | None = absent()
    content_type: str | None = absent()
    width: int | None = absent()
    height: int | None = absent()
    size_bytes: int | None = absent()
    sha256: str | None = absent()
    status: str | None = absent()
    error: str | None = absent()
    generation: dict[str, Any] | None = absent()
    duplicate_of: str | None = absent()
    near_duplicate_of: str | None = absent()
    url: str
    url_expires_in: int


# ---------------------------------------------------------------- embeddings
class Embedding(BaseModel):
    embedding_id: str
    model_id: str
    dim: int
    embedding: list[float]
    created_at: str


class EmbeddingQueued(BaseModel):
    embedding_id: str
    status: Literal["queued"]


# ---------------------------------------------------------------- similarity
class Match(BaseModel):
    image_id: str
    similarity: float
    url: str


class SimilarityPage(BaseModel):
    image_id: str
    prompt: str
    model_id: str
    k: int
    candidates: int = Field(
        description="the candidates ranked: with `exact`, those that passed the filters; "
        "with `hnsw`, the vectors the index and the newer shards hold"
    )
    ranking: Literal["exact", "hnsw"] = Field(description=RANKING_DESCRIPTION)
    next_cursor: str | None = Field(description="pass it back as cursor for the next page")
    results: list[Match]


class Vector(BaseModel):
    model_id: str
    dim: int
    embedding: list[float]


class EmbedRequest(BaseModel):
    img: Base64Image | None = None
    url: ImageUrl | None = None

    @model_validator(mode="after")
    def _one_image(self) -> EmbedRequest:
        if self.img is None and self.url is None:
            raise PydanticCustomError("missing_img", "send img (base64) or url")
        return self


class PairRequest(BaseModel):
    img_1: Base64Image | None = None
    url_1: ImageUrl | None = None
    img_2: Base64Image | None = None
    url_2: ImageUrl | None = None

    @model_validator(mode="after")
    def _two_images(self) -> PairRequest:
        for n, img, url in ((1, self.img_1, self.url_1), (2, self.img_2, self.url_2)):
            if img is None and url is None:
                raise PydanticCustomError(f"missing_img_{n}", f"send img_{n} (base64) or url_{n}")
        return self


class PairScore(BaseModel):
    similarity: float = Field(ge=0, le=1, description="cosine mapped linearly to [0, 1]")
    cosine: float
    model_id: str


class MultiQuery(BaseModel):
    prompt: str = Field(description=PROMPT_DESCRIPTION)
    k: int = Field(default=10, ge=1, le=MAX_K, strict=True)
    images: list[Base64Image] = Field(default_factory=list, max_length=MAX_QUERY_IMAGES)
    image_ids: list[ImageId] = Field(default_factory=list, max_length=MAX_QUERY_IMAGES)
    exact: bool = Field(default=False, strict=True, description=EXACT_DESCRIPTION)

    @model_validator(mode="after")
    def _some_images(self) -> MultiQuery:
        if not 1 <= len(self.images) + len(self.image_ids) <= MAX_QUERY_IMAGES:
            raise PydanticCustomError(
                "invalid_query",
                "send 1 to {most} images (base64) and/or image_ids",
                {"most": MAX_QUERY_IMAGES},
            )
        return self


class QueryMatches(BaseModel):
    """The ranked list of one query: `image_id` for a stored image, `index` for a sent one."""

    image_id: str | None = absent()
    index: int | None = absent()
    model_id: str
    ranking: Literal["exact", "hnsw"] = Field(description=RANKING_DESCRIPTION)
    results: list[Match]


class MultiQueryResults(BaseModel):
    prompt: str
    k: int
    queries: list[QueryMatches]
