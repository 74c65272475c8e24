"""Airflow's REST API v2, as far as `imgsim campaign run` needs it: unpause and trigger a DAG,
read the run, its task instances and their XCom return values. The calls travel either over
HTTP to the API server (a token from its login) or through MWAA's InvokeRestApi, which signs
them with the caller's IAM credentials (`airflow:InvokeRestApi`)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from pipeline.cli.errors import FAILED, NOT_RUNNING, CliError


@dataclass(frozen=True)
class Reply:
    """Airflow's answer to one call: its HTTP status and JSON body."""

    status: int
    body: Any

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


# (method, path under /api/v2, query parameters, JSON body) -> Airflow's answer
Transport = Callable[[str, str, dict[str, str] | None, dict[str, Any] | None], Reply]


def access_token(base_url: str, username: str, password: str, timeout: float = 30) -> str:
    """A JWT from the API server's /auth/token (Airflow 3's simple and FAB auth managers)."""
    response = requests.post(
        f"{base_url.rstrip('/')}/auth/token",
        json={"username": username, "password": password},
        timeout=timeout,
    )
    if not response.ok:
        raise CliError(f"Airflow refused the login of {username} (HTTP {response.status_code})")
    return str(response.json()["access_token"])


class HttpTransport:
    """Calls to the API server itself."""

    def __init__(self, base_url: str, token: str | None = None, timeout: float = 30) -> None:
        self.base_url, self.timeout = base_url.rstrip("/"), timeout
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def __call__(
        self, method: str, path: str, params: dict[str, str] | None, body: dict[str, Any] | None
    ) -> Reply:
        try:
            response = self.session.request(
                method,
                f"{self.base_url}/api/v2{path}",
                params=params,
                json=body,
                timeout=self.timeout,
            )
        except requests.ConnectionError:
            raise CliError(
                f"cannot reach Airflow at {self.base_url}: start the stack (`imgsim up`) or "
                "pass --airflow-url",
                NOT_RUNNING,
            ) from None
        try:
            return Reply(response.status_code, response.json() if response.content else None)
        except ValueError:
            return Reply(response.status_code, response.text)


class MwaaTransport:
    """Calls through MWAA's InvokeRestApi on environment `name` (a boto3 `mwaa` client): Airflow's
    4xx and 5xx come back as RestApiClientException / RestApiServerException with its status."""

    def __init__(self, name: str, client: Any) -> None:
        self.name, self.client = name, client

    def __call__(
        self, method: str, path: str, params: dict[str, str] | None, body: dict[str, Any] | None
    ) -> Reply:
        call: dict[str, Any] = {"Name": self.name, "Path": path, "Method": method}
        if params:
            call["QueryParameters"] = params
        if body is not None:
            call["Body"] = body
        try:
            answer = self.client.invoke_rest_api(**call)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            if error.get("Code") in ("RestApiClientException", "RestApiServerException"):
                return Reply(
                    int(exc.response["RestApiStatusCode"]), exc.response["RestApiResponse"]
                )
            raise CliError(
                f"MWAA environment {self.name}: {error.get('Code')}: {error.get('Message')}"
                + (_GRANT if error.get("Code") == "AccessDeniedException" else ""),
                FAILED,
            ) from None
        except EndpointConnectionError:
            raise CliError(
                f"cannot reach MWAA for environment {self.name}: check the region "
                "(AWS_REGION), or start the local stack (`imgsim up`)",
                NOT_RUNNING,
            ) from None
        except BotoCoreError as exc:  # no credentials, a bad region: the caller's setup
            raise CliError(f"MWAA environment {self.name}: {exc}") from None
        return Reply(int(answer["RestApiStatusCode"]), answer.get("RestApiResponse"))


_GRANT = (
    " (the caller needs airflow:InvokeRestApi on "
    "arn:aws:airflow:<region>:<account>:role/<environment>/<Airflow role>; see docs/deploy.md)"
)


class AirflowClient:
    def __init__(self, transport: Transport, where: str) -> None:
        """`where` names the Airflow in messages: its URL, or the MWAA environment."""
        self.transport, self.where = transport, where

    def _json(
        self,
        method: str,
        path: str,
        params: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
    ) -> Any:
        reply = self.transport(method, path, params, body)
        if reply.status == 404 and path.count("/") == 2:
            dag_id = path.split("/")[2]
            raise CliError(f"Airflow has no DAG {dag_id}", FAILED)
        if not reply.ok:
            raise CliError(f"Airflow: {method} {path}: HTTP {reply.status} {reply.body}")
        return reply.body

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        """Unpause the DAG (a paused DAG's runs stay queued) and start a run; its run id."""
        self._json("PATCH", f"/dags/{dag_id}", body={"is_paused": False})
        body = {"logical_date": None, "conf": conf or {}}
        return str(self._json("POST", f"/dags/{dag_id}/dagRuns", body=body)["dag_run_id"])

    def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return dict(self._json("GET", f"/dags/{dag_id}/dagRuns/{run_id}"))

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances"
        return list(self._json("GET", path, params={"limit": "1000"})["task_instances"])

    def return_value(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> Any:
        """A task instance's return value, or None while it has none."""
        reply = self.transport(
            "GET",
            f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value",
            {"map_index": str(map_index)},
            None,
        )
        if not reply.ok or not isinstance(reply.body, dict):
            return None
        value = reply.body.get("value")
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                return json.loads(value)
        return value

    def run_page(self, dag_id: str, run_id: str) -> str:
        """Where a person looks at a run (its task logs)."""
        if self.where.startswith("http"):
            return f"the Airflow UI at {self.where}/dags/{dag_id}/runs/{run_id}"
        return f"the Airflow UI of {self.where}, DAG {dag_id}, run {run_id}"
