"""The reads behind GET /prompts: every ShardManifests item (manifests and active-model
pointers), and a prompt's newest embedded
image through the Images table's Prompt_GSI (partition `prompt`, sort `created_at`)."""

from __future__ import annotations

from typing import Any

from pipeline import aws
from pipeline.storage.active_models import ACTIVE_KEY
from pipeline.storage.dynamodb_codec import deserialize_item
from pipeline.storage.images_table import EMBEDDED
from pipeline.storage.manifests_table import Manifest, ManifestStore

PROMPT_INDEX = "Prompt_GSI"
PAGE = 25  # items read per Query page while looking for the newest embedded one


class CatalogReads(aws.Adapter):
    """Read-only scans and queries over ShardManifests and Images."""

    service = "dynamodb"

    def manifests(self) -> tuple[list[Manifest], dict[str, str]]:
        """Every manifest (one item per prompt and model) and every prompt's active-model
        pointer ({prompt: model_id}), from one paginated Scan: the pointers are the table's
        `(prompt, "@active")` items (pipeline.storage.active_models), never manifests."""
        pages = self.client.get_paginator("scan").paginate(
            TableName=self.settings.shard_manifests_table
        )
        manifests, active = [], {}
        for item in (item for page in pages for item in page.get("Items", [])):
            if item["model_id"]["S"] == ACTIVE_KEY:
                active[item["prompt"]["S"]] = item["active_model_id"]["S"]
            else:
                manifests.append(ManifestStore.from_item(item))
        return manifests, active

    def newest_of(self, prompt: str, listed: tuple[str, str] | None) -> dict[str, Any] | None:
        """The prompt's newest embedded image: the row its manifests listed last (`listed`,
        pipeline.lookup.catalog.newest_listed) when its record is still that embedded image
        of `prompt` (one GetItem, however many images the prompt has), else the query."""
        if listed is not None:
            image_id, created_at = listed
            response = self.client.get_item(
                TableName=self.settings.images_table,
                Key={"image_id": {"S": image_id}},
                ProjectionExpression="image_id, created_at, prompt, #s",
                ExpressionAttributeNames={"#s": "status"},
            )
            record = deserialize_item(response.get("Item", {}))
            if (record.get("status"), record.get("prompt"), record.get("created_at")) == (
                EMBEDDED,
                prompt,
                created_at,
            ):
                return {"image_id": image_id, "created_at": created_at}
        return self.newest_embedded(prompt)

    def newest_embedded(self, prompt: str) -> dict[str, Any] | None:
        """The most recently created embedded image of `prompt`, or None. The filter runs after
        each page is read, so pages are followed until one holds a match."""
        pages = self.client.get_paginator("query").paginate(
            TableName=self.settings.images_table,
            IndexName=PROMPT_INDEX,
            KeyConditionExpression="prompt = :prompt",
            FilterExpression="#s = :embedded",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":prompt": {"S": prompt}, ":embedded": {"S": EMBEDDED}},
            ProjectionExpression="image_id, created_at, #s",
            ScanIndexForward=False,
            PaginationConfig={"PageSize": PAGE},
        )
        for page in pages:
            for item in page.get("Items", []):
                return deserialize_item(item)
        return None
