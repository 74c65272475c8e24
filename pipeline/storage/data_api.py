"""SQL on the vector index's PostgreSQL through the RDS Data API: HTTPS and IAM, no driver, no
connection to hold, no VPC for the API function (docs/design.md, Vector index).

The local stack answers the same protocol in front of its own PostgreSQL
(pipeline/local/rds_data), so the path AWS runs is the one the tests run."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pipeline import aws
from pipeline.settings import Settings

Row = list[Any]
# Polls of a statement left running past the Data API's call timeout (an index build).
POLL_SECONDS = 5.0
# A paused Serverless v2 cluster (minimum 0 ACU) refuses calls while it resumes: retried for
# this long, within the API's 29-second integration timeout.
RESUME_WAIT_S = 20.0
RESUME_POLL_S = 2.0


class DataApiNotConfigured(RuntimeError):
    """No cluster or secret ARN: the vector index is not set up here."""


def parameter(name: str, value: Any) -> dict[str, Any]:
    """One named SQL parameter as the Data API types it. Pure."""
    if value is None:
        typed: dict[str, Any] = {"isNull": True}
    elif isinstance(value, bool):
        typed = {"booleanValue": value}
    elif isinstance(value, int):
        typed = {"longValue": value}
    elif isinstance(value, float):
        typed = {"doubleValue": value}
    elif isinstance(value, str):
        typed = {"stringValue": value}
    elif isinstance(value, bytes):
        typed = {"blobValue": value}
    else:
        raise TypeError(f"parameter {name}: {type(value).__name__} is not a Data API type")
    return {"name": name, "value": typed}


def field_value(field: Mapping[str, Any]) -> Any:
    """The Python value of one result field. Pure."""
    if field.get("isNull"):
        return None
    for kind in ("stringValue", "longValue", "doubleValue", "booleanValue", "blobValue"):
        if kind in field:
            return field[kind]
    raise ValueError(f"unexpected Data API field {sorted(field)}")


class DataApi(aws.Adapter):
    service = "rds-data"

    def __init__(self, settings: Settings, client: Any | None = None) -> None:
        super().__init__(settings, client)
        if not (settings.vector_db_cluster_arn and settings.vector_db_secret_arn):
            raise DataApiNotConfigured(
                "IMGSIM_VECTOR_DB_CLUSTER_ARN and IMGSIM_VECTOR_DB_SECRET_ARN are not set"
            )

    def _target(self) -> dict[str, str]:
        return {
            "resourceArn": self.settings.vector_db_cluster_arn,
            "secretArn": self.settings.vector_db_secret_arn,
            "database": self.settings.vector_db_name,
        }

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        """The statement's rows (none for a statement that returns none)."""
        response = self._call(
            "execute_statement",
            sql=sql,
            parameters=[parameter(n, v) for n, v in (params or {}).items()],
        )
        return [[field_value(f) for f in record] for record in response.get("records", [])]

    def execute_many(self, sql: str, param_sets: Sequence[Mapping[str, Any]]) -> None:
        """One statement for each parameter set, in one call."""
        if not param_sets:
            return
        self._call(
            "batch_execute_statement",
            sql=sql,
            parameterSets=[[parameter(n, v) for n, v in params.items()] for params in param_sets],
        )

    def execute_long(self, sql: str, done: str, timeout_s: float) -> None:
        """A statement that may outlast the Data API's call timeout (an index build): it goes
        on after the call times out, and `done` (a query of one boolean) says when it has."""
        try:
            self._call("execute_statement", sql=sql, continueAfterTimeout=True)
        except self.client.exceptions.StatementTimeoutException:
            deadline = time.monotonic() + timeout_s
            while not self._true(done):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"still running after {timeout_s:.0f} s: {sql}") from None
                time.sleep(POLL_SECONDS)

    def _call(self, operation: str, **kwargs: Any) -> Any:
        """One Data API call, waited out while a paused cluster resumes."""
        client = self.client
        deadline = time.monotonic() + RESUME_WAIT_S
        while True:
            try:
                return getattr(client, operation)(**self._target(), **kwargs)
            except client.exceptions.DatabaseResumingException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(RESUME_POLL_S)

    def _true(self, query: str) -> bool:
        rows = self.execute(query)
        return bool(rows and rows[0][0])


def chunks(items: Iterable[Mapping[str, Any]], max_bytes: int) -> Iterable[list[Mapping[str, Any]]]:
    """Parameter sets in groups whose values add up to at most `max_bytes` (the Data API
    limits a request's size). Pure."""
    group: list[Mapping[str, Any]] = []
    size = 0
    for params in items:
        weight = sum(len(str(v)) for v in params.values())
        if group and size + weight > max_bytes:
            yield group
            group, size = [], 0
        group.append(params)
        size += weight
    if group:
        yield group
