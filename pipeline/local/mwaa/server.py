"""MWAA's InvokeRestApi on the wire: a SigV4-signed `POST /restapi/{Name}` whose JSON names the
Airflow REST API call (Method, Path, QueryParameters, Body). The call goes to Airflow's
`/api/v2{Path}`; a 2xx comes back as 200 with RestApiStatusCode and RestApiResponse, a 4xx as
RestApiClientException and a 5xx as RestApiServerException, each carrying Airflow's status and
answer (HTTP 400, as the service model declares both). `GET /environments/{Name}` is
GetEnvironment, with the fronted Airflow's version (what `imgsim preflight` checks)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from importlib.metadata import version
from typing import Any

import requests

from pipeline.local.loopback import AwsError, LoopbackServer, send_json

_INVOKE = re.compile(r"^/restapi/([^/?]+)$")
_ENVIRONMENT = re.compile(r"^/environments/([^/?]+)$")
# Authorization: AWS4-HMAC-SHA256 Credential=<key id>/<date>/<region>/airflow/aws4_request, ...
_SIGNED_FOR_MWAA = re.compile(r"^AWS4-HMAC-SHA256 Credential=[^/,]+/\d{8}/[^/,]+/airflow/")
METHODS = ("GET", "PUT", "POST", "PATCH", "DELETE")


@dataclass(frozen=True)
class Environment:
    """The one environment the emulator fronts: its name and its Airflow's API server (the
    local stack's, whose simple auth manager makes every caller an admin)."""

    name: str
    airflow_url: str
    airflow_version: str = field(default_factory=lambda: version("apache-airflow"))


def invoke(environment: Environment, name: str, request: dict[str, Any]) -> tuple[int, Any]:
    """Airflow's status and JSON answer to the call `request` describes."""
    if name != environment.name:
        raise AwsError("ResourceNotFoundException", f"Environment {name} not found", 404)
    method, path = request.get("Method"), request.get("Path")
    if method not in METHODS:
        raise AwsError("ValidationException", f"Method must be one of {', '.join(METHODS)}")
    if not isinstance(path, str) or not path.startswith("/"):
        raise AwsError("ValidationException", "Path must be an Airflow REST API path")
    try:
        response = requests.request(
            method,
            f"{environment.airflow_url.rstrip('/')}/api/v2{path}",
            params=request.get("QueryParameters") or None,
            json=request.get("Body") if method in ("PUT", "POST", "PATCH") else None,
            timeout=60,
        )
    except requests.RequestException:
        raise AwsError(
            "InternalServerException", "the Airflow web server did not answer", 500
        ) from None
    try:
        answer = response.json() if response.content else {}
    except ValueError:
        answer = {"detail": response.text}
    return response.status_code, answer


def _handler(environment: Environment) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            match = _ENVIRONMENT.match(self.path)
            if not match:  # a liveness answer for `imgsim status`
                self._send(200, {"environment": environment.name}, None)
            elif not _SIGNED_FOR_MWAA.match(self.headers.get("Authorization") or ""):
                self._send(403, {"message": "not SigV4-signed for MWAA"}, "AccessDeniedException")
            elif match.group(1) != environment.name:
                message = f"Environment {match.group(1)} not found"
                self._send(404, {"message": message}, "ResourceNotFoundException")
            else:
                about = {
                    "Name": environment.name,
                    "AirflowVersion": environment.airflow_version,
                    "Status": "AVAILABLE",
                }
                self._send(200, {"Environment": about}, None)

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            match = _INVOKE.match(self.path)
            try:
                if not match:
                    raise AwsError("UnknownOperationException", f"no operation at {self.path}", 404)
                if not _SIGNED_FOR_MWAA.match(self.headers.get("Authorization") or ""):
                    raise AwsError(
                        "MissingAuthenticationTokenException",
                        "the request is not SigV4-signed for MWAA (service airflow)",
                        403,
                    )
                request = json.loads(raw or b"{}")
                status, answer = invoke(environment, match.group(1), request)
            except AwsError as fault:
                self._send(fault.status, {"message": fault.message}, fault.code)
                return
            except json.JSONDecodeError:
                self._send(400, {"message": "body is not JSON"}, "ValidationException")
                return
            out = {"RestApiStatusCode": status, "RestApiResponse": answer}
            if status < 400:
                self._send(200, out, None)
            else:
                error = "RestApiClientException" if status < 500 else "RestApiServerException"
                self._send(400, {"message": f"Airflow answered {status}", **out}, error)

        def _send(self, status: int, body: dict[str, Any], error: str | None) -> None:
            send_json(self, status, body, error)

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


class MwaaEmulator(LoopbackServer):
    name = "mwaa-emulator"

    def __init__(self, environment: Environment, host: str = "127.0.0.1", port: int = 0) -> None:
        self.environment = environment
        super().__init__(_handler(environment), host, port)
