"""The logic behind GET /embeddings/{embedding_id}."""

from __future__ import annotations

from typing import Any

from pipeline.errors import ApiError
from pipeline.ingest.ingestor import Ingestor
from pipeline.storage.embeddings_table import EmbeddingStore
from pipeline.storage.images_table import EMBEDDED, FAILED


def embedding_view(
    ingestor: Ingestor, embeddings: EmbeddingStore, embedding_id: str
) -> tuple[int, dict[str, Any]]:
    """(200, the vector) when embedded; (202, queued) after ringing the embed queue for a known
    image that has no current embedding; 404 unknown; 409 when embedding it failed."""
    record = ingestor.images.get(embedding_id)
    if record is None:
        raise ApiError(404, "embedding_not_found", f"no image {embedding_id}")
    if record["status"] == FAILED:
        raise ApiError(
            409, "image_failed", f"image {embedding_id} cannot be embedded: {record.get('error')}"
        )
    item = embeddings.get(embedding_id)
    if record["status"] == EMBEDDED and item and item.get("source_etag") == record["etag"]:
        return 200, {
            "embedding_id": embedding_id,
            "model_id": item["model_id"],
            "dim": item["dim"],
            "embedding": item["embedding"].tolist(),
            "created_at": item["created_at"],
        }
    ingestor.queue.request_embedding(embedding_id, record["s3_key"], record["etag"], priority=True)
    return 202, {"embedding_id": embedding_id, "status": "queued"}
