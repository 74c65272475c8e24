"""A query image's vector of the model that answers its prompt, embedded on demand: an image
embedded by another model after its prompt switched (or before the backfill reached it) is
sent to the embedding endpoint, and the vector is kept beside its others when the endpoint
serves that model. Any other outcome is None: the lookup then uses the image's own model."""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np
from botocore.exceptions import BotoCoreError, ClientError

from pipeline import aws
from pipeline.settings import Settings
from pipeline.storage.dynamodb_codec import utc_now
from pipeline.storage.embeddings_table import EmbeddingStore

log = logging.getLogger(__name__)


class EndpointVectors:
    def __init__(
        self,
        settings: Settings,
        embeddings: EmbeddingStore,
        runtime: Any | None = None,
        s3: Any | None = None,
    ) -> None:
        self.settings = settings
        self.embeddings = embeddings
        self._runtime = runtime
        self._s3 = s3

    def vector(self, record: dict[str, Any], model_id: str) -> dict[str, Any] | None:
        """The image's `model_id` vector from the endpoint (the object version the record
        describes, If-Match on its ETag), stored under the record's ETag; None when the
        endpoint serves another model or cannot embed it now."""
        try:
            data = self._object(record)
            result = self._invoke(data, record.get("content_type") or "application/x-image")
        except (ClientError, BotoCoreError, ValueError) as exc:
            log.warning("on-demand %s vector of %s: %s", model_id, record["image_id"], exc)
            return None
        if result.get("model_id") != model_id or "embedding" not in result:
            return None
        vector = np.asarray(result["embedding"], dtype=np.float32)
        at = utc_now()
        self.embeddings.put_model_vector(record["image_id"], model_id, vector, record["etag"], at)
        return {
            "embedding_id": record["image_id"],
            "model_id": model_id,
            "dim": int(vector.shape[0]),
            "embedding": vector,
            "source_etag": record["etag"],
            "created_at": at,
        }

    def _object(self, record: dict[str, Any]) -> bytes:
        if self._s3 is None:
            self._s3 = aws.client(self.settings, "s3")
        response = self._s3.get_object(
            Bucket=self.settings.bucket, Key=record["s3_key"], IfMatch=record["etag"]
        )
        return bytes(response["Body"].read())

    def _invoke(self, data: bytes, content_type: str) -> dict[str, Any]:
        if self._runtime is None:
            self._runtime = aws.client(self.settings, "sagemaker-runtime")
        response = self._runtime.invoke_endpoint(
            EndpointName=self.settings.embed_endpoint,
            ContentType=content_type,
            Accept="application/json",
            Body=data,
        )
        return dict(json.loads(response["Body"].read()))
