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
import threading
from dataclasses import dataclass
from datetime import date
from typing import Any

from botocore.exceptions import ConnectTimeoutError, ReadTimeoutError

from pipeline import aws
from pipeline.generation.budget import API_BUDGET, RetryBudget
from pipeline.generation.budget import CAMPAIGN_BUDGET as CAMPAIGN_BUDGET  # for the DAG
from pipeline.generation.families import family, limits
from pipeline.generation.model_status import (
    STABILITY_NOTE,
    ModelUnavailable,
    check_model,
    not_offered,
)
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


class TimedOut(Exception):
    """No answer within the retry budget's timeouts."""


class OutOfRange(ValueError):
    """A seed or prompt the model's family does not accept."""


def check_inputs(model_id: str, prompt: str, seed: int) -> None:
    bounds = limits(model_id)
    if not 0 <= seed <= bounds.max_seed:
        raise OutOfRange(f"{model_id} takes seeds from 0 to {bounds.max_seed}, not {seed}")
    if len(prompt) > bounds.max_prompt_chars:
        raise OutOfRange(
            f"{model_id} takes prompts of at most {bounds.max_prompt_chars} characters, "
            f"not {len(prompt)}"
        )


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
    jitter, a retry quota shared by the client's calls) within a RetryBudget. Standard rather
    than adaptive: adaptive's client-side rate limit is per process, while Bedrock's quota is
    per account and shared with other Lambdas and Airflow tasks. Each model's lifecycle is
    checked once, before its first call (ModelUnavailable when it is gone)."""

    service = "bedrock-runtime"

    def __init__(
        self,
        settings: Settings,
        client: Any | None = None,
        budget: RetryBudget = API_BUDGET,
        lifecycle_client: Any | None = None,
        today: date | None = None,
    ) -> None:
        super().__init__(settings, client)
        self.budget = budget
        self._lifecycle_client = lifecycle_client
        self._today = today  # end-of-life dates are compared with today unless this is set
        self._checked: dict[str, str] = {}
        self._check_lock = threading.Lock()

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = aws.client(self.settings, self.service, config=self.budget.config())
        return self._client

    def check(self, model_id: str) -> str | None:
        """The model's lifecycle verdict, asked once per model and kept; asked again next time
        when it could not be had or the model was unavailable (a fixed setting or grant is seen
        without a restart)."""
        with self._check_lock:
            if model_id not in self._checked:
                verdict = check_model(self.settings, model_id, self._lifecycle_client, self._today)
                if verdict is None:
                    return None
                self._checked[model_id] = verdict
            return self._checked[model_id]

    def generate(
        self, model_id: str, prompt: str, width: int, height: int, seed: int, cfg_scale: float = 8.0
    ) -> Generated:
        check_inputs(model_id, prompt, seed)
        self.check(model_id)
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
            if code == "ValidationException" and "model identifier" in message.lower():
                raise ModelUnavailable(
                    not_offered(model_id, self.settings.bedrock_region)
                ) from None
            if code in UNAVAILABLE:
                attempts = _attempts(exc.response)
                raise Throttled(f"{code} after {attempts} calls: {message}") from None
            if code in ("AccessDeniedException", "ResourceNotFoundException"):
                hint = f"; {STABILITY_NOTE}" if family(model_id) == "stability" else ""
                raise ModelUnavailable(f"{code}: {message}{hint}") from None
            raise
        except (ConnectTimeoutError, ReadTimeoutError) as exc:
            raise TimedOut(
                f"{model_id} did not answer within {self.budget.attempts} calls of "
                f"{self.budget.read_timeout:g} s ({exc})"
            ) from None
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
