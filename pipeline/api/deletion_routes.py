"""DELETE /images/{image_id}: a takedown or privacy request. The object goes first, then the
same deletion path an S3 removal event takes (pipeline.deletion.deleter) runs at once, so the
image leaves every lookup before the answer; the event that follows finds the work done."""

from __future__ import annotations

from typing import Annotated, Literal

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Path
from pydantic import BaseModel

from pipeline.api.dependencies import ApiDependencies
from pipeline.api.openapi import responses
from pipeline.api.security import requirement
from pipeline.deletion.deleter import Deleter
from pipeline.storage.keys import IMAGE_ID_PATTERN

ImageIdPath = Annotated[str, Path(pattern=IMAGE_ID_PATTERN, description="an image id")]


class DeletedImage(BaseModel):
    image_id: str
    status: Literal["deleted"]


def deletion_router(api: ApiDependencies) -> Router:
    router = Router()
    guard = requirement(api.settings.api_keys)
    ingestor = api.ingestor
    deleter = ingestor.deleter or Deleter(
        api.settings, ingestor.objects, ingestor.images, api.embeddings
    )

    @router.delete(
        "/images/<image_id>",
        summary="Delete an image everywhere: object, record, vector, shard rows",
        security=guard,
        responses=responses(
            "deleted (repeating the call answers the same)",
            {
                400: "invalid id",
                404: "unknown image",
                503: "new versions kept coming while it was deleted: retry",
            },
            guarded=guard is not None,
        ),
    )
    def delete_image(image_id: ImageIdPath) -> DeletedImage:
        return DeletedImage.model_validate(deleter.delete_image(image_id))

    return router
