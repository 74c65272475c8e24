"""The emulator's HTTP side: POST /model/{modelId}/invoke, Bedrock's own wire protocol, so
boto3's bedrock-runtime client reaches it through an endpoint URL. It can be told to throttle
or refuse a fraction of calls (deterministically, from a seed), or to answer every call with one
error (code, HTTP status), for tests."""

from __future__ import annotations

import base64
import json
import random
import re
import threading
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import unquote

from pipeline.generation.bedrock import family
from pipeline.local.bedrock.painter import paint
from pipeline.local.loopback import AwsError, LoopbackServer

_INVOKE = re.compile(r"^/model/([^/]+)/invoke$")
FILTERED = "This request has been blocked by our content filters."


class Behaviour:
    """Which calls to throttle or refuse: a fraction of them, decided by a seeded stream."""

    def __init__(
        self,
        throttle_rate: float = 0.0,
        refuse_rate: float = 0.0,
        seed: int = 0,
        fault: tuple[str, int] | None = None,
    ):
        self.throttle_rate, self.refuse_rate, self.fault = throttle_rate, refuse_rate, fault
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.calls = 0

    def next(self) -> str:
        with self._lock:
            self.calls += 1
            draw = self._rng.random()
        if draw < self.throttle_rate:
            return "throttle"
        if draw < self.throttle_rate + self.refuse_rate:
            return "refuse"
        return "paint"


def invoke(model_id: str, body: dict[str, Any], behaviour: Behaviour) -> dict[str, Any]:
    try:
        kind = family(model_id)
    except ValueError:
        raise AwsError("ResourceNotFoundException", f"model {model_id} not found", 404) from None
    prompt, width, height, seed = _read(kind, body)
    action = behaviour.next()
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

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            match = _INVOKE.match(self.path.split("?")[0])
            try:
                if not match:
                    raise AwsError("UnknownOperationException", f"no operation at {self.path}", 404)
                payload = invoke(unquote(match.group(1)), json.loads(raw or b"{}"), behaviour)
                self._send(200, json.dumps(payload).encode(), {})
            except AwsError as fault:
                self._send(
                    fault.status,
                    json.dumps({"message": fault.message}).encode(),
                    {"x-amzn-ErrorType": f"{fault.code}:http://internal.amazon.com/"},
                )
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
            self.end_headers()
            self.wfile.write(data)

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
