"""POST /embed, POST /similarity/pair and POST /similarity: images embedded on demand through
the embedding model's SageMaker endpoint (sagemaker-runtime InvokeEndpoint)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from pipeline import aws
from pipeline.errors import ApiError
from pipeline.lookup.image_inputs import from_base64, from_url, sniff
from pipeline.lookup.similarity import MAX_K, SimilarityService
from pipeline.prompts import InvalidPrompt, checked_prompt

MAX_QUERY_IMAGES = 8


class OnDemandQueries:
    """Query images that are not in the pipeline: embedded now by the model's endpoint."""

    def __init__(
        self, similarity: SimilarityService, runtime: Any | None = None, s3: Any | None = None
    ) -> None:
        self.similarity = similarity
        self.settings = similarity.settings
        self._runtime = runtime
        self._s3 = s3

    @property
    def runtime(self) -> Any:
        if self._runtime is None:
            self._runtime = aws.client(self.settings, "sagemaker-runtime")
        return self._runtime

    @property
    def s3(self) -> Any:
        if self._s3 is None:
            self._s3 = aws.client(self.settings, "s3")
        return self._s3

    def image(self, payload: dict[str, Any], img: str, url: str) -> bytes:
        """The bytes of one image given as `img` (base64) or `url`."""
        if payload.get(img) is not None:
            return from_base64(payload[img], img, self.settings.limits.max_body_bytes)
        if payload.get(url) is not None:
            return from_url(payload[url], url, self.settings, self.s3)
        raise ApiError(400, f"missing_{img}", f"send {img} (base64) or {url}")

    def embed_bytes(self, data: bytes) -> dict[str, Any]:
        content_type = sniff(data)
        try:
            response = self.runtime.invoke_endpoint(
                EndpointName=self.settings.embed_endpoint,
                ContentType=content_type,
                Accept="application/json",
                Body=data,
            )
        except self.runtime.exceptions.ModelError as exc:
            raise ApiError(
                400,
                "invalid_image",
                f"the model refused the image: {exc.response['Error'].get('Message', exc)}",
            ) from None
        except self.runtime.exceptions.ClientError as exc:
            raise ApiError(
                503,
                "embedding_unavailable",
                "the embedding endpoint "
                f"{self.settings.embed_endpoint} cannot serve: "
                f"{exc.response['Error'].get('Message', exc)}",
            ) from None
        result = json.loads(response["Body"].read())
        if "embedding" not in result:
            raise ApiError(
                400, "invalid_image", f"the image cannot be embedded: {result.get('error')}"
            )
        return result

    def embed(self, payload: dict[str, Any]) -> dict[str, Any]:
        result = self.embed_bytes(self.image(payload, "img", "url"))
        return {
            "model_id": result["model_id"],
            "dim": len(result["embedding"]),
            "embedding": result["embedding"],
        }

    def pair(self, payload: dict[str, Any]) -> dict[str, Any]:
        first = self.embed_bytes(self.image(payload, "img_1", "url_1"))
        second = self.embed_bytes(self.image(payload, "img_2", "url_2"))
        cosine = float(
            np.dot(
                np.asarray(first["embedding"], np.float32),
                np.asarray(second["embedding"], np.float32),
            )
        )
        return {
            "similarity": min(1.0, max(0.0, (cosine + 1) / 2)),
            "cosine": cosine,
            "model_id": first["model_id"],
        }

    def similar_to_each(self, payload: dict[str, Any]) -> dict[str, Any]:
        try:
            prompt = checked_prompt(payload.get("prompt"), self.settings.limits.max_prompt_chars)
        except InvalidPrompt as exc:
            raise ApiError(400, "invalid_prompt", f"prompt: {exc}") from None
        k = payload.get("k", 10)
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_K:
            raise ApiError(400, "invalid_k", f"k must be an integer between 1 and {MAX_K}")
        images, ids = payload.get("images") or [], payload.get("image_ids") or []
        if not isinstance(images, list) or not isinstance(ids, list):
            raise ApiError(400, "invalid_json", "images and image_ids must be lists")
        if not 1 <= len(images) + len(ids) <= MAX_QUERY_IMAGES:
            raise ApiError(
                400,
                "invalid_query",
                f"send 1 to {MAX_QUERY_IMAGES} images (base64) and/or image_ids",
            )
        queries = []
        for image_id in ids:
            if not isinstance(image_id, str):
                raise ApiError(400, "invalid_image_id", "image_ids must be strings")
            item = self.similarity.query_vector(image_id)
            queries.append(({"image_id": image_id}, item["embedding"], item["model_id"], image_id))
        for index, encoded in enumerate(images):
            result = self.embed_bytes(
                from_base64(encoded, f"images[{index}]", self.settings.limits.max_body_bytes)
            )
            queries.append(({"index": index}, result["embedding"], result["model_id"], None))
        lists = []
        for label, vector, model_id, exclude in queries:
            ranked = self.similarity.top_k(vector, model_id, prompt, k, None, 0, exclude)
            lists.append({**label, "model_id": model_id, "results": ranked["results"]})
        return {"prompt": prompt, "k": k, "queries": lists}
