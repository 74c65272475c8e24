"""The Embeddings table: one vector per image, little-endian float32."""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline import aws
from pipeline.settings import Settings
from pipeline.storage.dynamodb_codec import deserialize_item, serialize_item


def vector_bytes(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype="<f4").tobytes()


def vector_from_bytes(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<f4").copy()


class EmbeddingStore(aws.Adapter):
    """Embeddings: one item per image (`embedding_id` = image_id), vector as little-endian f32."""

    service = "dynamodb"

    def __init__(self, settings: Settings, client: Any | None = None) -> None:
        super().__init__(settings, client)
        self.table = settings.embeddings_table

    def put(
        self,
        image_id: str,
        model_id: str,
        vector: np.ndarray,
        shard_key: str | None,
        source_etag: str,
        created_at: str,
    ) -> None:
        item = {
            "embedding_id": image_id,
            "model_id": model_id,
            "dim": int(vector.shape[0]),
            "embedding": vector_bytes(vector),
            "source_etag": source_etag,
            "created_at": created_at,
        }
        if shard_key:
            item["shard_key"] = shard_key
        self.client.put_item(TableName=self.table, Item=serialize_item(item))

    def get(self, image_id: str) -> dict[str, Any] | None:
        response = self.client.get_item(
            TableName=self.table, ConsistentRead=True, Key={"embedding_id": {"S": image_id}}
        )
        if "Item" not in response:
            return None
        item = deserialize_item(response["Item"])
        item["embedding"] = vector_from_bytes(item["embedding"])
        return item
