"""The Embeddings table: one vector per image and model, little-endian float32.

The item keyed by the image id (`embedding_id` = image_id) holds the vector of the model the
image's record names (`embedding_model_id`); a vector of another model (a backfill of a model
upgrade) is an item of its own keyed `<image_id>#<model_id>` (`#` is never part of an image id),
so the table's key schema and every existing reader stay as they are."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from pipeline import aws
from pipeline.settings import Settings
from pipeline.storage.dynamodb_codec import deserialize_item, serialize_item

BATCH_ATTEMPTS = 8  # BatchWriteItem calls for one chunk, backing off between them


def vector_bytes(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype="<f4").tobytes()


def vector_from_bytes(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<f4").copy()


def _model_item(
    image_id: str, model_id: str, vector: np.ndarray, source_etag: str, created_at: str
) -> dict[str, Any]:
    return {
        "embedding_id": model_embedding_id(image_id, model_id),
        "image_id": image_id,
        "model_id": model_id,
        "dim": int(vector.shape[0]),
        "embedding": vector_bytes(vector),
        "source_etag": source_etag,
        "created_at": created_at,
    }


def model_embedding_id(image_id: str, model_id: str) -> str:
    """The key of an image's vector of a model other than its own."""
    return f"{image_id}#{model_id}"


class EmbeddingStore(aws.Adapter):
    """Embeddings: the image's own vector at `embedding_id` = image_id, other models' vectors
    at `<image_id>#<model_id>`; vectors as little-endian f32."""

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

    def put_model_vector(
        self, image_id: str, model_id: str, vector: np.ndarray, source_etag: str, created_at: str
    ) -> None:
        """The vector of another model than the image's own, beside it (overwrite on retry).
        No shard key: compaction repoints only the image's own item."""
        item = _model_item(image_id, model_id, vector, source_etag, created_at)
        self.client.put_item(TableName=self.table, Item=serialize_item(item))

    def put_model_vectors(
        self, model_id: str, vectors: list[tuple[str, np.ndarray, str]], created_at: str
    ) -> None:
        """Many (image_id, vector, source_etag) of one model, 25 to a BatchWriteItem, backing
        off on unprocessed items (a backfill writes a batch of thousands)."""
        for start in range(0, len(vectors), 25):
            requests = [
                {"PutRequest": {"Item": serialize_item(_model_item(i, model_id, v, e, created_at))}}
                for i, v, e in vectors[start : start + 25]
            ]
            for attempt in range(BATCH_ATTEMPTS):
                response = self.client.batch_write_item(RequestItems={self.table: requests})
                requests = response.get("UnprocessedItems", {}).get(self.table, [])
                if not requests:
                    break
                time.sleep(0.02 * 2**attempt)
            else:
                raise RuntimeError(f"BatchWriteItem on {self.table} left items unprocessed")

    def get_for_model(self, image_id: str, model_id: str) -> dict[str, Any] | None:
        """The image's vector of `model_id`: its own item if of that model, else the item beside
        it; both keys in one consistent BatchGetItem."""
        keys = [image_id, model_embedding_id(image_id, model_id)]
        request: dict[str, Any] = {
            self.table: {"Keys": [{"embedding_id": {"S": k}} for k in keys], "ConsistentRead": True}
        }
        found: dict[str, dict[str, Any]] = {}
        while request:
            response = self.client.batch_get_item(RequestItems=request)
            for raw in response.get("Responses", {}).get(self.table, []):
                item = deserialize_item(raw)
                found[item["embedding_id"]] = item
            request = response.get("UnprocessedKeys") or {}
        for key in keys:
            match = found.get(key)
            if match is not None and match.get("model_id") == model_id:
                match["embedding"] = vector_from_bytes(match["embedding"])
                return match
        return None

    def promote(self, image_id: str, model_id: str, retired: str) -> bool:
        """Make the image's `model_id` vector its own, in place of a retired model's: only if
        the own item still is the retired model's (a newer embedding is never overwritten);
        then the item beside it goes. False when there is nothing to promote."""
        other = model_embedding_id(image_id, model_id)
        response = self.client.get_item(
            TableName=self.table, ConsistentRead=True, Key={"embedding_id": {"S": other}}
        )
        if "Item" not in response:
            return False
        item = {**response["Item"], "embedding_id": {"S": image_id}}
        item.pop("image_id", None)
        try:
            self.client.put_item(
                TableName=self.table,
                Item=item,
                ConditionExpression="model_id = :retired",
                ExpressionAttributeValues={":retired": {"S": retired}},
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        self.delete(other)
        return True

    def delete(self, embedding_id: str) -> None:
        self.client.delete_item(TableName=self.table, Key={"embedding_id": {"S": embedding_id}})

    def get(self, image_id: str) -> dict[str, Any] | None:
        response = self.client.get_item(
            TableName=self.table, ConsistentRead=True, Key={"embedding_id": {"S": image_id}}
        )
        if "Item" not in response:
            return None
        item = deserialize_item(response["Item"])
        item["embedding"] = vector_from_bytes(item["embedding"])
        return item
