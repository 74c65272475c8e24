"""The API on loopback: HTTP requests become API Gateway REST proxy events for the same
handler that runs on Lambda, and its proxy responses become HTTP responses.

Requests arrive on threads, but the handler runs one invocation at a time, as one Lambda
execution environment does: the handler's resolver (powertools) keeps the current event on
the app, so two invocations at once would read each other's event."""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pipeline.local.lambda_context import LocalLambdaContext
from pipeline.local.loopback import LoopbackServer
from pipeline.settings import LAMBDA_SYNC_PAYLOAD_BYTES

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
API_GATEWAY_MAX_BODY = 10 * 1024 * 1024  # API Gateway refuses larger payloads itself
# What API Gateway answers when Lambda refuses the invocation as too large
# (RequestEntityTooLargeException): the REQUEST_TOO_LARGE gateway response, not the app's.
LAMBDA_REFUSED_STATUS = 413
LAMBDA_REFUSED_BODY = b'{"message": "Request Too Long"}'
STAGE = "v1"
log = logging.getLogger(__name__)


def proxy_event(
    method: str, raw_path: str, headers: dict[str, list[str]], body: bytes, source_ip: str
) -> dict[str, Any]:
    """An API Gateway REST (v1) proxy event for a `/{proxy+}` resource."""
    url = urlsplit(raw_path)
    query = parse_qs(url.query, keep_blank_values=True)
    try:
        text, is_b64 = body.decode("utf-8"), False
    except UnicodeDecodeError:
        text, is_b64 = base64.b64encode(body).decode("ascii"), True
    event: dict[str, Any] = {
        "resource": "/{proxy+}",
        "path": url.path,
        "httpMethod": method,
        "headers": {k: v[-1] for k, v in headers.items()},
        "multiValueHeaders": headers,
        "queryStringParameters": {k: v[-1] for k, v in query.items()} or None,
        "multiValueQueryStringParameters": query or None,
        "pathParameters": {"proxy": url.path.lstrip("/")},
        "stageVariables": None,
        "requestContext": {
            "resourcePath": "/{proxy+}",
            "httpMethod": method,
            # served at the root, like a custom domain mapped to the stage: no stage in the
            # path, so powertools gives /docs and the spec the server "/" (on AWS: "/v1")
            "path": url.path,
            "stage": STAGE,
            "requestId": str(uuid.uuid4()),
            "accountId": "123456789012",
            "apiId": "local",
            "protocol": "HTTP/1.1",
            "requestTimeEpoch": int(time.time() * 1000),
            "identity": {"sourceIp": source_ip, "userAgent": headers.get("User-Agent", [""])[-1]},
        },
        "body": text if body else None,
        "isBase64Encoded": is_b64,
    }
    return event


def invocation_payload_bytes(event: dict[str, Any]) -> int:
    """The size of the Invoke request Lambda's quota counts: the event as compact JSON."""
    return len(json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


def _make_request_handler(handler: Handler) -> type[BaseHTTPRequestHandler]:
    one_invocation = threading.Lock()  # one execution environment

    class ProxyRequestHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > API_GATEWAY_MAX_BODY:
                self._send(
                    413,
                    {"Content-Type": "application/json"},
                    json.dumps(
                        {"error": {"code": "payload_too_large", "message": "request exceeds 10 MB"}}
                    ).encode(),
                )
                self.close_connection = True
                return
            body = self.rfile.read(length) if length else b""
            headers: dict[str, list[str]] = {}
            for key, value in self.headers.items():
                headers.setdefault(key, []).append(value)
            event = proxy_event(self.command, self.path, headers, body, self.client_address[0])
            if invocation_payload_bytes(event) >= LAMBDA_SYNC_PAYLOAD_BYTES:
                self._send(
                    LAMBDA_REFUSED_STATUS,
                    {
                        "Content-Type": "application/json",
                        "x-amzn-ErrorType": "BadRequestException",
                    },
                    LAMBDA_REFUSED_BODY,
                )
                return
            try:
                with one_invocation:
                    result = handler(event, LocalLambdaContext("imgsim-api-local"))
            except Exception:  # API Gateway answers 502 when the function itself fails
                log.exception("API handler raised")
                result = {
                    "statusCode": 502,
                    "headers": {"Content-Type": "application/json"},
                    "body": json.dumps(
                        {"error": {"code": "internal_error", "message": "the API function failed"}}
                    ),
                }
            payload = result.get("body") or ""
            data = (
                base64.b64decode(payload)
                if result.get("isBase64Encoded")
                else payload.encode("utf-8")
            )
            out_headers = dict(result.get("headers") or {})
            for key, values in (result.get("multiValueHeaders") or {}).items():
                out_headers[key] = ", ".join(values)
            self._send(int(result.get("statusCode", 502)), out_headers, data)

        def _send(self, status: int, headers: dict[str, str], data: bytes) -> None:
            self.send_response(status)
            for key, value in headers.items():
                if key.lower() != "content-length":
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if not getattr(self, "_head_only", False):
                self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = _handle

        def __getattr__(self, name: str) -> Any:
            # any other method (QUERY, PROPFIND, ...) goes to the handler too, which answers
            # 405 or 404 in the API's JSON error shape
            if name.startswith("do_"):
                return self._handle
            raise AttributeError(name)

        def do_HEAD(self) -> None:  # API Gateway passes HEAD on; the response has no body
            self._head_only = True
            self._handle()

        def log_message(self, format: str, *args: Any) -> None:
            return

    return ProxyRequestHandler


class LocalApi(LoopbackServer):
    name = "local-api"

    def __init__(self, handler: Handler, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(_make_request_handler(handler), host, port)
