"""What every local HTTP stand-in shares: a threaded server on loopback, started in a daemon
thread, and a foreground mode that stops cleanly on SIGTERM or SIGINT."""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


class AwsError(Exception):
    """An AWS error response an emulator answers: the HTTP status, the error code boto3 raises
    as an exception class, and the message."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


class LoopbackServer:
    name = "loopback-server"

    def __init__(
        self, handler: type[BaseHTTPRequestHandler], host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> Self:
        threading.Thread(target=self._server.serve_forever, name=self.name, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def run_until_signalled(stop: Callable[[], None]) -> None:
    """Block the main thread until SIGTERM or SIGINT, then call stop()."""
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    stopping.wait()
    stop()


def send_json(
    handler: BaseHTTPRequestHandler, status: int, body: Any, error: str | None = None
) -> None:
    """A JSON answer as AWS's rest-json services give it: an error names its type in the
    `x-amzn-ErrorType` header, which botocore reads."""
    data = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    if error:
        handler.send_header("x-amzn-ErrorType", error)
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)
