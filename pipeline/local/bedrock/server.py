"""The emulator's HTTP side, Bedrock's own wire protocols, so boto3's clients reach it through an
endpoint URL: POST /model/{modelId}/invoke (bedrock-runtime InvokeModel, with each family's seed
and prompt limits, and models past their end of life refused), GET /foundation-models/{id} (the
control plane's GetFoundationModel, with the model's lifecycle) and GET
/foundation-model-availability/{id} (GetFoundationModelAvailability: the account's Marketplace
agreement, authorization, entitlement and the region's). Each request is answered for the region
its SigV4 credential scope names (the emulator's own `region` when it names none): a model the
region does not serve is refused as Bedrock refuses it. It can be told to throttle or refuse a
fraction of calls (deterministically, from a seed), to answer every call with one error (code,
HTTP status), to take a while to answer, or to play an account without model access, for
tests."""

from __future__ import annotations

import base64
import json
import random
import re
import threading
import time
from datetime import UTC, date, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import unquote

from pipeline.generation.families import family, limits
from pipeline.local.bedrock.catalogue import (
    NOT_OFFERED,
    Access,
    availability,
    model_details,
    offered_in,
    past_end_of_life,
)
from pipeline.local.bedrock.painter import paint
from pipeline.local.loopback import AwsError, LoopbackServer

_INVOKE = re.compile(r"^/model/([^/]+)/invoke$")
_FOUNDATION_MODEL = re.compile(r"^/foundation-models/([^/]+)$")
_AVAILABILITY = re.compile(r"^/foundation-model-availability/([^/]+)$")
# Authorization: AWS4-HMAC-SHA256 Credential=<key id>/<date>/<region>/<service>/aws4_request, ...
_SCOPE_REGION = re.compile(r"Credential=[^/,]+/\d{8}/([^/,]+)/")
FILTERED = "This request has been blocked by our content filters."


class Behaviour:
    """Which calls to throttle or refuse: a fraction of them, decided by a seeded stream."""

    def __init__(
        self,
        throttle_rate: float = 0.0,
        refuse_rate: float = 0.0,
        seed: int = 0,
        fault: tuple[str, int] | None = None,
        latency_seconds: float = 0.0,
        today: date | None = None,
        region: str = "us-west-2",
        access: Access | None = None,
    ):
        self.throttle_rate, self.refuse_rate, self.fault = throttle_rate, refuse_rate, fault
        self.latency_seconds = latency_seconds
        self.region = region  # for a request whose signature names no region
        self.access = access or Access()
        self._today = today
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.calls = 0

    @property
    def today(self) -> date:
        """The date end-of-life dates are compared with: today, unless a test fixes it."""
        return self._today or datetime.now(UTC).date()

    def next(self) -> str:
        with self._lock:
            self.calls += 1
            draw = self._rng.random()
        if draw < self.throttle_rate:
            return "throttle"
        if draw < self.throttle_rate + self.refuse_rate:
            return "refuse"
        return "paint"


def request_region(authorization: str | None, default: str) -> str:
    """The region a SigV4-signed request was signed for (its credential scope), else `default`."""
    match = _SCOPE_REGION.search(authorization or "")
    return match.group(1) if match else default


def _offered(model_id: str, region: str) -> None:
    """Bedrock's refusal of a known model in a region that does not serve it."""
    if model_details(model_id) is not None and not offered_in(model_id, region):
        raise AwsError(*NOT_OFFERED)


def invoke(
    model_id: str, body: dict[str, Any], behaviour: Behaviour, region: str | None = None
) -> dict[str, Any]:
    try:
        kind = family(model_id)
    except ValueError:
        raise AwsError("ResourceNotFoundException", f"model {model_id} not found", 404) from None
    _offered(model_id, region or behaviour.region)
    ended = past_end_of_life(model_id, behaviour.today)
    if ended:
        raise AwsError(
            "ValidationException",
            f"This model version ({model_id}) has reached the end of its life on {ended}. "
            "Please refer to the AWS documentation for more details.",
        )
    prompt, width, height, seed = _read(kind, body)
    _check_limits(kind, model_id, prompt, seed)
    action = behaviour.next()
    if behaviour.latency_seconds:
        time.sleep(behaviour.latency_seconds)
    if behaviour.fault:
        code, status = behaviour.fault
        raise AwsError(code, f"{code} (emulated)", status)
    if action == "throttle":
        raise AwsError(
            "ThrottlingException", "Too many requests, please wait before trying again.", 429
        )
    refused = action == "refuse" or "forbidden" in prompt.lower()
    if kind == "stability":
        if refused:
            return {"seeds": [seed], "finish_reasons": ["Filter reason: prompt"], "images": []}
        image = paint(prompt, width, height, seed)
        return {
            "seeds": [seed],
            "finish_reasons": [None],
            "images": [base64.b64encode(image).decode()],
        }
    if refused:
        raise AwsError("ValidationException", FILTERED)
    image = paint(prompt, width, height, seed)
    return {"images": [base64.b64encode(image).decode()], "error": None}


def _check_limits(kind: str, model_id: str, prompt: str, seed: int) -> None:
    """The family's own limits, refused with the JSON-schema wording Bedrock uses."""
    bounds = limits(model_id)
    if not 0 <= seed <= bounds.max_seed:
        field = "seed" if kind == "stability" else "imageGenerationConfig/seed"
        raise AwsError(
            "ValidationException",
            f"Malformed input request: #/{field}: {seed} is not less or equal to "
            f"{bounds.max_seed}, please reformat your input and try again.",
        )
    if len(prompt) > bounds.max_prompt_chars:
        field = "prompt" if kind == "stability" else "textToImageParams/text"
        raise AwsError(
            "ValidationException",
            f"Malformed input request: #/{field}: expected maxLength: "
            f"{bounds.max_prompt_chars}, actual: {len(prompt)}, please reformat your input "
            "and try again.",
        )


def _read(kind: str, body: dict[str, Any]) -> tuple[str, int, int, int]:
    try:
        if kind == "stability":
            ratio = body.get("aspect_ratio", "1:1")
            w, h = (int(x) for x in ratio.split(":"))
            return (
                body["prompt"],
                512 * w // max(w, h),
                512 * h // max(w, h),
                int(body.get("seed", 0)),
            )
        if body.get("taskType") != "TEXT_IMAGE":
            raise AwsError("ValidationException", "taskType must be TEXT_IMAGE")
        config = body.get("imageGenerationConfig", {})
        width, height = int(config.get("width", 1024)), int(config.get("height", 1024))
        if width % 64 or height % 64 or not (256 <= width <= 2048 and 256 <= height <= 2048):
            raise AwsError(
                "ValidationException",
                "width and height must be multiples of 64 between 256 and 2048",
            )
        return body["textToImageParams"]["text"], width, height, int(config.get("seed", 0))
    except (KeyError, TypeError, ValueError) as exc:
        raise AwsError("ValidationException", f"malformed request body ({exc})") from None


def _handler(behaviour: Behaviour) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            region = request_region(self.headers.get("Authorization"), behaviour.region)
            try:
                if match := _AVAILABILITY.match(path):
                    answer = availability(unquote(match.group(1)), region, behaviour.access)
                elif match := _FOUNDATION_MODEL.match(path):
                    model_id = unquote(match.group(1))
                    _offered(model_id, region)
                    details = model_details(model_id, region)
                    answer = {"modelDetails": details} if details else None
                else:
                    answer = None
                if answer is None:
                    raise AwsError("ResourceNotFoundException", "The model is not found.", 404)
            except AwsError as fault:
                self._fail(fault)
                return
            self._send(200, json.dumps(answer).encode(), {})

        def _fail(self, fault: AwsError) -> None:
            self._send(
                fault.status,
                json.dumps({"message": fault.message}).encode(),
                {"x-amzn-ErrorType": f"{fault.code}:http://internal.amazon.com/"},
            )

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            match = _INVOKE.match(self.path.split("?")[0])
            try:
                if not match:
                    raise AwsError("UnknownOperationException", f"no operation at {self.path}", 404)
                region = request_region(self.headers.get("Authorization"), behaviour.region)
                body = json.loads(raw or b"{}")
                payload = invoke(unquote(match.group(1)), body, behaviour, region)
                self._send(200, json.dumps(payload).encode(), {})
            except AwsError as fault:
                self._fail(fault)
            except json.JSONDecodeError:
                self._send(
                    400,
                    b'{"message": "body is not JSON"}',
                    {"x-amzn-ErrorType": "ValidationException"},
                )

        def _send(self, status: int, data: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Server", "imgsim-bedrock-emulator")
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            try:
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up waiting (its read timeout): nothing to answer

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


class BedrockEmulator(LoopbackServer):
    name = "bedrock-emulator"

    def __init__(
        self, behaviour: Behaviour | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.behaviour = behaviour or Behaviour()
        super().__init__(_handler(self.behaviour), host, port)
