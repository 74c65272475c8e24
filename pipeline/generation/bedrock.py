"""Text-to-image on Amazon Bedrock through boto3 `bedrock-runtime` InvokeModel.

Request and response shapes of the three families, selected by model id: Amazon Titan Image
Generator v2, Amazon Nova Canvas (both TEXT_IMAGE task bodies) and Stability AI (SD3.5 Large,
Stable Image Core/Ultra). Throttling and unavailability are retried with jittered exponential
backoff; a content-filter refusal is not retried and raises Refused with the model's reason.
"""

from __future__ import annotations

import base64
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.config import Config

from pipeline import aws
from pipeline.settings import Settings

RETRYABLE = {
    "ThrottlingException",
    "ServiceUnavailableException",
    "ModelTimeoutException",
    "InternalServerException",
    "ModelNotReadyException",
}


class Refused(Exception):
    """The model refused the prompt (content filter); retrying will not help."""


class Throttled(Exception):
    """Still throttled or unavailable after every retry."""


def family(model_id: str) -> str:
    if model_id.startswith("amazon.titan-image-generator"):
        return "titan"
    if model_id.startswith("amazon.nova-canvas"):
        return "nova"
    if model_id.startswith("stability."):
        return "stability"
    raise ValueError(f"{model_id} is not a supported text-to-image model")


def aspect_ratio(width: int, height: int) -> str:
    """Stability takes an aspect ratio, not a size: the nearest one it supports."""
    ratios = {
        "1:1": 1,
        "16:9": 16 / 9,
        "21:9": 21 / 9,
        "2:3": 2 / 3,
        "3:2": 3 / 2,
        "4:5": 4 / 5,
        "5:4": 5 / 4,
        "9:16": 9 / 16,
        "9:21": 9 / 21,
    }
    return min(ratios, key=lambda r: abs(ratios[r] - width / height))


def request_body(
    model_id: str, prompt: str, width: int, height: int, seed: int, cfg_scale: float = 8.0
) -> dict[str, Any]:
    if family(model_id) in ("titan", "nova"):
        return {
            "taskType": "TEXT_IMAGE",
            "textToImageParams": {"text": prompt},
            "imageGenerationConfig": {
                "numberOfImages": 1,
                "width": width,
                "height": height,
                "cfgScale": cfg_scale,
                "seed": seed,
                "quality": "standard",
            },
        }
    return {
        "prompt": prompt,
        "mode": "text-to-image",
        "seed": seed,
        "output_format": "png",
        "aspect_ratio": aspect_ratio(width, height),
    }


def image_from_response(model_id: str, payload: dict[str, Any]) -> bytes:
    """The first image of a response, or Refused with the model's reason."""
    if family(model_id) == "stability":
        reasons = [r for r in payload.get("finish_reasons") or [] if r]
        if reasons:
            raise Refused(str(reasons[0]))
    elif payload.get("error"):
        raise Refused(str(payload["error"]))
    images = payload.get("images") or []
    if not images:
        raise Refused("the model returned no image")
    return base64.b64decode(images[0])


@dataclass(frozen=True)
class Generated:
    image: bytes
    model_id: str
    seed: int
    attempts: int


class BedrockImages(aws.Adapter):
    """generate() retries on its own (jittered, exponential), so the client it makes has
    boto3's retries off: one policy, not two multiplied."""

    service = "bedrock-runtime"

    def __init__(
        self,
        settings: Settings,
        client: Any | None = None,
        max_attempts: int = 6,
        base_delay: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(settings, client)
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self._sleep = sleep
        self._rng = rng or random.Random()

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = aws.client(
                self.settings, self.service, config=Config(retries={"total_max_attempts": 1})
            )
        return self._client

    def generate(
        self, model_id: str, prompt: str, width: int, height: int, seed: int, cfg_scale: float = 8.0
    ) -> Generated:
        body = json.dumps(request_body(model_id, prompt, width, height, seed, cfg_scale))
        for attempt in range(1, self.max_attempts + 1):
            try:
                response = self.client.invoke_model(
                    modelId=model_id,
                    body=body,
                    contentType="application/json",
                    accept="application/json",
                )
            except self.client.exceptions.ClientError as exc:
                code = exc.response["Error"]["Code"]
                message = exc.response["Error"].get("Message", "")
                if code == "ValidationException" and "filter" in message.lower():
                    raise Refused(message) from None
                if code not in RETRYABLE:
                    raise
                if attempt == self.max_attempts:
                    raise Throttled(f"{code} after {attempt} attempts: {message}") from None
                # full jitter: a random wait up to the exponential cap
                self._sleep(self._rng.uniform(0, self.base_delay * 2 ** (attempt - 1)))
                continue
            payload = json.loads(response["body"].read())
            return Generated(
                image=image_from_response(model_id, payload),
                model_id=model_id,
                seed=seed,
                attempts=attempt,
            )
        raise AssertionError("unreachable")
