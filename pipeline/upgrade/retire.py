"""Retire a model after an upgrade: its shards, manifests and vectors go; an image whose own
vector was the retired model's gets its vector of the prompt's active model in its place.

Refused while any prompt may still be answered by the model (a pointer names it, or a prompt
has its shards and no pointer): retiring never takes a prompt's lookups away. An image with no
vector of another model keeps its vector and is reported (re-run the backfill, then retire
again), so no image is left without one.
"""

from __future__ import annotations

from typing import Any

from pipeline import aws
from pipeline.settings import Settings
from pipeline.storage.active_models import ACTIVE_KEY, ActiveModels
from pipeline.storage.dynamodb_codec import deserialize_item
from pipeline.storage.embeddings_table import EmbeddingStore
from pipeline.storage.images_table import ImageStore
from pipeline.storage.keys import EMBEDDINGS_PREFIX, slug


class RetireRefused(RuntimeError):
    """The model still answers some prompt's lookups."""


class Retirement:
    def __init__(
        self,
        settings: Settings,
        s3: Any | None = None,
        images: ImageStore | None = None,
        embeddings: EmbeddingStore | None = None,
        active: ActiveModels | None = None,
    ) -> None:
        self.settings = settings
        self._s3 = s3 or aws.client(settings, "s3")
        self.images = images or ImageStore(settings)
        self.embeddings = embeddings or EmbeddingStore(settings)
        self.active = active or ActiveModels(settings)

    def retire(self, model_id: str, dry_run: bool = False) -> dict[str, Any]:
        pointers = self.active.all()
        prompts = self._prompts_with(model_id)
        still = sorted(
            {p for p in prompts if pointers.get(p, model_id) == model_id}
            | {p for p, active in pointers.items() if active == model_id}
        )
        if still:
            raise RetireRefused(
                f"{model_id} still answers {len(still)} prompt(s), e.g. {still[:5]}: "
                "run the reembed DAG to a new model first"
            )
        if dry_run:
            return {"model_id": model_id, "prompts": prompts, "dry_run": True}
        vectors = self._retire_vectors(model_id, pointers)
        for prompt in prompts:
            self.active.client.delete_item(
                TableName=self.active.table,
                Key={"prompt": {"S": prompt}, "model_id": {"S": model_id}},
            )
        shards = self._delete_prefix(f"{EMBEDDINGS_PREFIX}model={slug(model_id)}/")
        return {"model_id": model_id, "prompts": prompts, "shards_deleted": shards, **vectors}

    def _prompts_with(self, model_id: str) -> list[str]:
        """Prompts with a manifest of the model (a Scan: a command, not a lookup)."""
        pages = self.active.client.get_paginator("scan").paginate(
            TableName=self.active.table,
            FilterExpression="model_id = :model",
            ExpressionAttributeValues={":model": {"S": model_id}},
        )
        found = {item["prompt"]["S"] for page in pages for item in page.get("Items", [])}
        return sorted(found - {ACTIVE_KEY})

    def _retire_vectors(self, model_id: str, pointers: dict[str, str]) -> dict[str, Any]:
        pages = self.embeddings.client.get_paginator("scan").paginate(
            TableName=self.embeddings.table,
            FilterExpression="model_id = :model",
            ExpressionAttributeValues={":model": {"S": model_id}},
            ProjectionExpression="embedding_id",
        )
        deleted = promoted = 0
        kept: list[str] = []
        for page in pages:
            for raw in page.get("Items", []):
                embedding_id = deserialize_item(raw)["embedding_id"]
                if "#" in embedding_id:  # a vector beside the image's own
                    self.embeddings.delete(embedding_id)
                    deleted += 1
                elif self._promote(embedding_id, model_id, pointers):
                    promoted += 1
                else:
                    kept.append(embedding_id)
        return {"vectors_deleted": deleted, "vectors_promoted": promoted, "kept": sorted(kept)}

    def _promote(self, image_id: str, model_id: str, pointers: dict[str, str]) -> bool:
        """The image's vector of its prompt's active model (else of another noted model)
        becomes its own, and its record says so."""
        record = self.images.get(image_id)
        if record is None:  # the image is gone: so goes its vector
            self.embeddings.delete(image_id)
            return True
        noted = sorted(set(record.get("embedded_models", ())) - {model_id})
        preferred = pointers.get(record.get("prompt") or "")
        for candidate in [m for m in [preferred] if m in noted] + noted:
            if self.embeddings.promote(image_id, candidate, model_id):
                self.images.adopt_model(image_id, record["etag"], candidate, model_id)
                return True
        return False

    def _delete_prefix(self, prefix: str) -> int:
        deleted = 0
        paginator = self._s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.settings.bucket, Prefix=prefix):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                self._s3.delete_objects(Bucket=self.settings.bucket, Delete={"Objects": keys})
                deleted += len(keys)
        return deleted
