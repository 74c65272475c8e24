"""The logic behind GET /embeddings/{embedding_id}."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pipeline.errors import ApiError
from pipeline.ingest.ingestor import Ingestor
from pipeline.storage.dynamodb_codec import timestamp
from pipeline.storage.embeddings_table import EmbeddingStore
from pipeline.storage.images_table import DELETED, EMBEDDED, FAILED, PENDING

# An embed request (from ingest, a redrive, or this route) counts as outstanding this long:
# about one embed run.
REREQUEST_AFTER = timedelta(minutes=5)


def _stale_before(now: str) -> str:
    return timestamp(datetime.fromisoformat(now.replace("Z", "+00:00")) - REREQUEST_AFTER)


def embedding_view(
    ingestor: Ingestor, embeddings: EmbeddingStore, embedding_id: str
) -> tuple[int, dict[str, Any]]:
    """(200, the vector) when embedded; (202, queued) for a known image that has no current
    embedding, after ringing the embed queue unless a request is outstanding (one message per
    image per `REREQUEST_AFTER`, whatever the number of calls); 404 unknown; 409 when
    embedding it failed."""
    record = ingestor.images.get(embedding_id)
    if record is None or record["status"] == DELETED:
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
    if record["status"] == PENDING:
        _ring_once(ingestor, record)
    return 202, {"embedding_id": embedding_id, "status": "queued"}


def _ring_once(ingestor: Ingestor, record: dict[str, Any]) -> None:
    """Claim the request on the record (a conditional write), then send it; a send that fails
    gives the claim back so the next call tries again."""
    now = ingestor.clock()
    image_id, etag = record["image_id"], record["etag"]
    if not ingestor.images.claim_embed_request(image_id, etag, now, _stale_before(now)):
        return
    try:
        ingestor.queue.request_embedding(image_id, record["s3_key"], etag, priority=True)
    except Exception:
        ingestor.images.release_embed_request(image_id, now, record.get("embed_requested_at"))
        raise
