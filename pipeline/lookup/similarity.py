"""GET /similarity: the top-k images of a prompt by cosine to an embedded image.

Query path dependencies are numpy, pyarrow and boto3 only (no torch, no Pillow)."""

from __future__ import annotations

from typing import Any

from pipeline.errors import ApiError
from pipeline.lookup.candidates import CandidateCache
from pipeline.lookup.cursor import decode_cursor, encode_cursor
from pipeline.lookup.ranking import rank
from pipeline.prompts import InvalidPrompt, checked_prompt
from pipeline.settings import Settings
from pipeline.storage.bucket import ObjectStore
from pipeline.storage.embeddings_table import EmbeddingStore
from pipeline.storage.images_table import EMBEDDED, ImageStore
from pipeline.storage.manifests_table import ManifestStore
from pipeline.storage.shards import ShardStore

MAX_K = 100
CANDIDATE_COLUMNS = ["image_id", "embedding", "s3_key"]


class SimilarityService:
    def __init__(
        self,
        settings: Settings,
        images: ImageStore,
        embeddings: EmbeddingStore,
        manifests: ManifestStore,
        objects: ObjectStore,
        cache: CandidateCache,
    ) -> None:
        self.settings = settings
        self.images = images
        self.embeddings = embeddings
        self.manifests = manifests
        self.objects = objects
        self.cache = cache

    @classmethod
    def from_settings(cls, settings: Settings) -> SimilarityService:
        shards = ShardStore(settings)  # one client for every shard read
        return cls(
            settings,
            ImageStore(settings),
            EmbeddingStore(settings),
            ManifestStore(settings),
            ObjectStore(settings),
            CandidateCache(lambda key: shards.read(key, CANDIDATE_COLUMNS)),
        )

    def lookup(
        self,
        image_id: str,
        prompt: str,
        k: int = 10,
        min_score: float | None = None,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """The page of the ranking that `cursor` points at (the first without one)."""
        try:
            normalized = checked_prompt(prompt, self.settings.limits.max_prompt_chars)
        except InvalidPrompt as exc:
            raise ApiError(400, "invalid_prompt", f"prompt: {exc}") from None
        offset = decode_cursor(cursor) if cursor else 0
        query = self.query_vector(image_id)
        return self.top_k(
            query["embedding"], query["model_id"], normalized, k, min_score, offset, image_id
        ) | {"image_id": image_id}

    def query_vector(self, image_id: str) -> dict[str, Any]:
        """The stored embedding of an image; 404 unknown, 409 not embedded (yet)."""
        record = self.images.get(image_id)
        if record is None:
            raise ApiError(404, "image_not_found", f"no image {image_id}")
        item = self.embeddings.get(image_id) if record["status"] == EMBEDDED else None
        if item is None or item.get("source_etag") != record.get("etag"):
            raise ApiError(
                409,
                "not_embedded",
                f"image {image_id} is {record['status']}, not "
                "embedded yet" + (f": {record['error']}" if record.get("error") else ""),
            )
        return item

    def top_k(
        self,
        vector: Any,
        model_id: str,
        prompt: str,
        k: int,
        min_score: float | None,
        offset: int,
        exclude: str | None,
    ) -> dict[str, Any]:
        manifest = self.manifests.get(prompt, model_id)
        if manifest is None or not manifest.shards:
            raise ApiError(
                404,
                "prompt_not_found",
                f"no embedded images for prompt {prompt!r} with model {model_id}",
            )
        candidates = self.cache.get(manifest)
        ranked = rank(candidates.matrix, candidates.ids, vector, offset + k, exclude, min_score)
        expiry = self.settings.presign_expiry_seconds
        results = [
            {
                "image_id": i,
                "similarity": s,
                "url": self.objects.presign_get(str(candidates.s3_keys[row]), expiry),
            }
            for i, s, row in zip(
                ranked.ids[offset:], ranked.scores[offset:], ranked.rows[offset:], strict=True
            )
        ]
        more = offset + k < ranked.total
        return {
            "prompt": prompt,
            "model_id": model_id,
            "k": k,
            "results": results,
            "candidates": ranked.total,
            "next_cursor": encode_cursor(offset + k, manifest.version) if more else None,
        }
