"""Text-to-image on Amazon Bedrock through boto3 `bedrock-runtime` InvokeModel.

Request and response shapes of the three families, selected by model id: Amazon Titan Image
Generator v2, Amazon Nova Canvas (both TEXT_IMAGE task bodies) and Stability AI (SD3.5 Large,
Stable Image Core/Ultra). Throttling and unavailability are retried by botocore's standard retry
mode; what is still throttled or unavailable afterwards raises Throttled (the API's 429), a
content-filter refusal is never retried and raises Refused with the model's reason (502).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from botocore.config import Config

from pipeline import aws
from pipeline.settings import Settings

# Error codes that mean "busy or unavailable, try later": raised as Throttled once botocore's
# retries are spent. botocore's standard mode retries ThrottlingException (a throttling code),
# ServiceUnavailableException (503) and InternalServerException (500) (transient statuses) and
# ModelNotReadyException (modelled `retryable` in bedrock-runtime's service model). It does not
# retry ModelTimeoutException (408): the model already spent its whole processing time, and
# another try would outlast API Gateway's 29 s integration timeout, so it is answered at once.
UNAVAILABLE = frozenset(
    {
        "ThrottlingException",
        "ServiceUnavailableException",
        "InternalServerException",
        "ModelNotReadyException",
        "ModelTimeoutException",
    }
)


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
    """The client it makes retries in botocore's standard mode (exponential backoff with full
    jitter, a retry quota shared by the client's calls) up to `max_attempts` calls in all.
    Standard rather than adaptive: adaptive's client-side rate limit is per process, while
    Bedrock's quota is per account and shared with other Lambdas and Airflow tasks. Four calls
    wait at most 1 + 2 + 4 s between them, which leaves GET /images room within API Gateway's
    29 s."""

    service = "bedrock-runtime"

    def __init__(
        self, settings: Settings, client: Any | None = None, max_attempts: int = 4
    ) -> None:
        super().__init__(settings, client)
        self.max_attempts = max_attempts

    @property
    def client(self) -> Any:
        if self._client is None:
            retries = {"mode": "standard", "total_max_attempts": self.max_attempts}
            self._client = aws.client(self.settings, self.service, config=Config(retries=retries))
        return self._client

    def generate(
        self, model_id: str, prompt: str, width: int, height: int, seed: int, cfg_scale: float = 8.0
    ) -> Generated:
        body = json.dumps(request_body(model_id, prompt, width, height, seed, cfg_scale))
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
            if code in UNAVAILABLE:
                attempts = _attempts(exc.response)
                raise Throttled(f"{code} after {attempts} calls: {message}") from None
            raise
        payload = json.loads(response["body"].read())
        return Generated(
            image=image_from_response(model_id, payload),
            model_id=model_id,
            seed=seed,
            attempts=_attempts(response),
        )


def _attempts(response: dict[str, Any]) -> int:
    """Calls made, retries included: botocore counts the retries in the response metadata, on
    errors too."""
    return int(response.get("ResponseMetadata", {}).get("RetryAttempts", 0)) + 1
