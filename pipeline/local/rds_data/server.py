"""The RDS Data API on the wire (rest-json, as botocore's `rds-data` model declares it):
SigV4-signed `POST /Execute`, `/BatchExecute`, `/BeginTransaction`, `/CommitTransaction` and
`/RollbackTransaction` with JSON bodies; errors as the HTTP status of the error's shape, the
`x-amzn-ErrorType` header and a JSON `message`. A request over the service's 4 MiB is refused.
`GET /` answers a liveness check for `imgsim status`."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler
from typing import Any

from pipeline.local.loopback import AwsError, LoopbackServer, send_json
from pipeline.local.rds_data.service import DataApi, Target

log = logging.getLogger(__name__)

REQUEST_LIMIT_BYTES = 4 * 1024 * 1024  # the service refuses larger HTTP requests
# Authorization: AWS4-HMAC-SHA256 Credential=<key id>/<date>/<region>/rds-data/aws4_request, ...
_SIGNED_FOR_RDS_DATA = re.compile(r"^AWS4-HMAC-SHA256 Credential=[^/,]+/\d{8}/[^/,]+/rds-data/")


def _operations(api: DataApi) -> dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]]:
    return {
        "/Execute": api.execute_statement,
        "/BatchExecute": api.batch_execute_statement,
        "/BeginTransaction": api.begin_transaction,
        "/CommitTransaction": api.commit_transaction,
        "/RollbackTransaction": api.rollback_transaction,
    }


def _handler(api: DataApi) -> type[BaseHTTPRequestHandler]:
    operations = _operations(api)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # a liveness answer for `imgsim status`
            self._send(200, {"service": "rds-data", "resources": sorted(api.target.resource_arns)})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            try:
                operation = operations.get(self.path.split("?", 1)[0])
                if operation is None:
                    raise AwsError("UnknownOperationException", f"no operation at {self.path}", 404)
                if not _SIGNED_FOR_RDS_DATA.match(self.headers.get("Authorization") or ""):
                    raise AwsError(
                        "MissingAuthenticationTokenException",
                        "the request is not SigV4-signed for rds-data",
                        403,
                    )
                if length > REQUEST_LIMIT_BYTES:
                    raise AwsError("BadRequestException", "Request size exceeds 4 MiB")
                request = json.loads(raw or b"{}")
                if not isinstance(request, dict):
                    raise AwsError("BadRequestException", "the body is not a JSON object")
                answer = operation(request)
            except AwsError as fault:
                self._send(fault.status, {"message": fault.message}, fault.code)
                return
            except json.JSONDecodeError:
                self._send(400, {"message": "body is not JSON"}, "BadRequestException")
                return
            except Exception as exc:  # a fault of the emulator: said, not hidden
                log.exception("rds-data %s failed", self.path)
                self._send(500, {"message": repr(exc)}, "InternalServerErrorException")
                return
            self._send(200, answer)

        def _send(self, status: int, body: dict[str, Any], error: str | None = None) -> None:
            send_json(self, status, body, error)

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


class RdsDataEmulator(LoopbackServer):
    name = "rds-data-emulator"

    def __init__(self, target: Target, host: str = "127.0.0.1", port: int = 0) -> None:
        self.api = DataApi(target)
        super().__init__(_handler(self.api), host, port)

    def stop(self) -> None:
        super().stop()
        self.api.close()
