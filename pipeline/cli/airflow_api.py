"""Airflow's REST API v2, as far as `imgsim campaign run` needs it: unpause and trigger a DAG,
read the run, its task instances and their XCom return values."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import requests

from pipeline.cli.errors import FAILED, NOT_RUNNING, CliError


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


class AirflowClient:
    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        timeout: float = 30,
        session: requests.Session | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = session or requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def _call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        try:
            return self.session.request(
                method, f"{self.base_url}/api/v2{path}", timeout=self.timeout, **kwargs
            )
        except requests.ConnectionError:
            raise CliError(
                f"cannot reach Airflow at {self.base_url}: start the stack (`imgsim up`) or "
                "pass --airflow-url",
                NOT_RUNNING,
            ) from None

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._call(method, path, **kwargs)
        if response.status_code == 404 and path.count("/") == 2:
            dag_id = path.split("/")[2]
            raise CliError(f"Airflow has no DAG {dag_id}", FAILED)
        if not response.ok:
            raise CliError(f"Airflow: {method} {path}: HTTP {response.status_code} {response.text}")
        return response.json()

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        """Unpause the DAG (a paused DAG's runs stay queued) and start a run; its run id."""
        self._json("PATCH", f"/dags/{dag_id}", json={"is_paused": False})
        body = {"logical_date": None, "conf": conf or {}}
        return str(self._json("POST", f"/dags/{dag_id}/dagRuns", json=body)["dag_run_id"])

    def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return dict(self._json("GET", f"/dags/{dag_id}/dagRuns/{run_id}"))

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        body = self._json("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=1000")
        return list(body["task_instances"])

    def return_value(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> Any:
        """A task instance's return value, or None while it has none."""
        response = self._call(
            "GET",
            f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value",
            params={"map_index": map_index},
        )
        if not response.ok:
            return None
        value = response.json().get("value")
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                return json.loads(value)
        return value
