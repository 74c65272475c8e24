"""HTTP front of the SageMaker emulator: the awsJson1_1 protocol of `sagemaker` (X-Amz-Target:
SageMaker.<Operation>) and the REST protocol of `sagemaker-runtime` InvokeEndpoint, on one
loopback port."""

from __future__ import annotations

import json
import logging
import re
from http.server import BaseHTTPRequestHandler
from typing import Any

from pipeline.local.loopback import AwsError, LoopbackServer
from pipeline.local.sagemaker.service import SageMakerService

log = logging.getLogger(__name__)
_INVOKE = re.compile(r"^/endpoints/([^/]+)/invocations$")


def _make_handler(service: SageMakerService) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                match = _INVOKE.match(self.path.split("?")[0])
                if match:
                    self._invoke(match.group(1), body)
                else:
                    self._json_operation(body)
            except AwsError as fault:
                self._send(
                    fault.status,
                    json.dumps(
                        {"__type": fault.code, "message": fault.message, "Message": fault.message}
                    ).encode(),
                    "application/x-amz-json-1.1",
                    {"x-amzn-ErrorType": fault.code},
                )
            except Exception as exc:  # a bug in the emulator: say so, do not hang the client
                log.exception("emulator error")
                self._send(
                    500,
                    json.dumps({"__type": "InternalFailure", "message": str(exc)}).encode(),
                    "application/x-amz-json-1.1",
                    {"x-amzn-ErrorType": "InternalFailure"},
                )

        def _json_operation(self, body: bytes) -> None:
            target = self.headers.get("X-Amz-Target", "")
            service_name, _, operation = target.partition(".")
            method = getattr(service, operation, None)
            if service_name != "SageMaker" or not operation[:1].isupper() or method is None:
                raise AwsError(
                    "UnknownOperationException",
                    f"the SageMaker emulator does not implement {target or 'this'}",
                )
            result = method(json.loads(body or b"{}"))
            self._send(200, json.dumps(result, default=str).encode(), "application/x-amz-json-1.1")

        def _invoke(self, endpoint: str, body: bytes) -> None:
            content_type = self.headers.get("Content-Type", "application/json")
            accept = self.headers.get("Accept", "application/json")
            out = service.invoke_endpoint(endpoint, body, content_type, accept)
            self._send(
                200,
                out,
                accept if accept != "*/*" else "application/json",
                {"x-Amzn-Invoked-Production-Variant": "AllTraffic"},
            )

        def _send(
            self, status: int, data: bytes, content_type: str, headers: dict[str, str] | None = None
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug(format, *args)

    return Handler


class SageMakerEmulator(LoopbackServer):
    name = "sagemaker-emulator"

    def __init__(self, service: SageMakerService, host: str = "127.0.0.1", port: int = 0) -> None:
        self.service = service
        super().__init__(_make_handler(service), host, port)
