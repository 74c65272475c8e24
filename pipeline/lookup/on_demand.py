"""POST /embed, POST /similarity/pair and POST /similarity: images embedded on demand through
the embedding model's SageMaker endpoint (sagemaker-runtime InvokeEndpoint)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from pipeline import aws
from pipeline.errors import ApiError
from pipeline.lookup.image_inputs import from_base64, from_url, sniff
from pipeline.lookup.similarity import SimilarityService
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

    def image(self, img: str | None, url: str | None, img_field: str, url_field: str) -> bytes:
        """The bytes of one image given as base64 (`img`) or as a `url`."""
        if img is not None:
            return from_base64(img, img_field, self.settings.limits.max_image_bytes)
        if url is not None:
            return from_url(url, url_field, self.settings, self.s3)
        raise ApiError(400, f"missing_{img_field}", f"send {img_field} (base64) or {url_field}")

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

    def embed(self, img: str | None, url: str | None) -> dict[str, Any]:
        result = self.embed_bytes(self.image(img, url, "img", "url"))
        return {
            "model_id": result["model_id"],
            "dim": len(result["embedding"]),
            "embedding": result["embedding"],
        }

    def pair(self, first: bytes, second: bytes) -> dict[str, Any]:
        """Cosine of two images, and the same mapped linearly to [0, 1]."""
        one, two = self.embed_bytes(first), self.embed_bytes(second)
        cosine = float(
            np.dot(
                np.asarray(one["embedding"], np.float32),
                np.asarray(two["embedding"], np.float32),
            )
        )
        return {
            "similarity": min(1.0, max(0.0, (cosine + 1) / 2)),
            "cosine": cosine,
            "model_id": one["model_id"],
        }

    def similar_to_each(
        self, prompt: str, k: int, images: list[str], image_ids: list[str], exact: bool = False
    ) -> dict[str, Any]:
        """One top-k list of `prompt` per stored image id, then per sent (base64) image.

        Every list is ranked against the prompt's active model (its pointer; without one,
        the model the query's vector is of): a sent image the endpoint embeds with another
        model is refused with 409 `model_mismatch`, as a stored image whose own model no
        longer answers the prompt is."""
        try:
            normalized = checked_prompt(prompt, self.settings.limits.max_prompt_chars)
        except InvalidPrompt as exc:
            raise ApiError(400, "invalid_prompt", f"prompt: {exc}") from None
        queries: list[tuple[dict[str, Any], Any, str, str | None]] = []
        active = self.similarity.active.get(normalized)
        for image_id in image_ids:
            item = self.similarity.query_vector(image_id, active, normalized)
            queries.append(({"image_id": image_id}, item["embedding"], item["model_id"], image_id))
        for index, encoded in enumerate(images):
            result = self.embed_bytes(
                from_base64(encoded, f"images[{index}]", self.settings.limits.max_image_bytes)
            )
            if active is not None and result["model_id"] != active:
                raise ApiError(
                    409,
                    "model_mismatch",
                    f"images[{index}] was embedded by {result['model_id']} (the endpoint "
                    f"{self.settings.embed_endpoint}); prompt {normalized!r} is answered by "
                    f"{active}: point the endpoint at {active}'s artifact",
                )
            queries.append(({"index": index}, result["embedding"], result["model_id"], None))
        lists = []
        for label, vector, model_id, exclude in queries:
            ranked = self.similarity.top_k(
                vector, model_id, normalized, k, None, 0, exclude, exact=exact
            )
            lists.append(
                {
                    **label,
                    "model_id": model_id,
                    "ranking": ranked["ranking"],
                    "results": ranked["results"],
                }
            )
        return {"prompt": normalized, "k": k, "queries": lists}
