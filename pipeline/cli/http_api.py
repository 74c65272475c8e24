"""The imgsim REST API as the CLI calls it: one session, the API key, and errors turned into
exit codes (an unreachable API is `NOT_RUNNING`, an error answer is `FAILED`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import requests

from pipeline.cli.errors import FAILED, NOT_RUNNING, CliError


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any

    @property
    def ok(self) -> bool:
        return self.status < 400

    def error(self) -> str:
        """`code: message` of the API's error shape, or the status alone."""
        detail = self.body.get("error", {}) if isinstance(self.body, dict) else {}
        if detail:
            return f"{detail.get('code')}: {detail.get('message')}"
        return f"HTTP {self.status}"


class ApiClient:
    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout: float = 60,
        session: requests.Session | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = session or requests.Session()
        if api_key:
            self.session.headers["x-api-key"] = api_key

    def call(self, method: str, path: str, **kwargs: Any) -> Answer:
        url = f"{self.base_url}{path}"
        try:
            response = self.session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.ConnectionError:
            raise CliError(
                f"cannot reach the API at {self.base_url}: start the stack (`imgsim up`) or "
                "pass --api-url",
                NOT_RUNNING,
            ) from None
        try:
            body = response.json()
        except ValueError:
            body = response.text
        return Answer(response.status_code, body)

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """The body of a successful answer; an error answer exits with FAILED."""
        answer = self.call(method, path, **kwargs)
        if not answer.ok:
            raise CliError(f"{method} {path}: {answer.error()} (HTTP {answer.status})", FAILED)
        return answer.body
