"""The gallery: `GET /` serves one self-contained page (HTML with its script and styles
inline, so it loads without a key and with no second request) whose script calls this same
API with relative URLs; `GET /prompts` lists what that page can search."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from pydantic import BaseModel, Field

from pipeline.api import gallery
from pipeline.api.openapi import responses
from pipeline.api.security import requirement
from pipeline.lookup.catalog import newest_listed, prompt_catalog
from pipeline.settings import Settings
from pipeline.storage.catalog_reads import CatalogReads


class NewestImage(BaseModel):
    image_id: str
    created_at: str


class PromptSummary(BaseModel):
    prompt: str = Field(description="the normalized prompt")
    model_id: str = Field(description="the model whose vectors these are")
    images: int = Field(description="vector rows in the prompt's shards for this model")
    newest: NewestImage = Field(description="the prompt's most recent embedded image")


class PromptList(BaseModel):
    prompts: list[PromptSummary]


def gallery_router(settings: Settings) -> Router:
    router = Router()
    guard = requirement(settings.api_keys)
    reads = CatalogReads(settings)

    @router.get("/", include_in_schema=False)
    def gallery_page() -> Response[str]:
        return Response(
            status_code=200,
            content_type="text/html; charset=utf-8",
            body=gallery.page(),
            headers={
                "Content-Security-Policy": gallery.content_security_policy(),
                "Cache-Control": "no-cache",
                "X-Content-Type-Options": "nosniff",
            },
        )

    @router.get(
        "/prompts",
        summary="Prompts with embedded images: model, vector count and newest image",
        security=guard,
        responses=responses("the prompts, sorted", {}, guarded=guard is not None),
    )
    def list_prompts() -> PromptList:
        manifests, active = reads.manifests()
        listed = newest_listed(manifests)
        catalog = prompt_catalog(manifests, lambda p: reads.newest_of(p, listed.get(p)), active)
        return PromptList.model_validate({"prompts": catalog})

    return router
