"""The Data API's calls against a PostgreSQL server: each request's ARNs checked, its statement
run on a pooled connection of the database it names (autocommit) or on its transaction's own
connection, and the answer shaped, and refused, as the service shapes and refuses it.

Errors as the service answers them for Aurora Serverless v2 / provisioned PostgreSQL: an error
PostgreSQL raises is a DatabaseErrorException whose message is PostgreSQL's (`ERROR: ...;
Position: 15; SQLState: 42P01`); a result over 1 MiB is a BadRequestException ("Database
returned more than the allowed response size limit"); an unknown cluster ARN is an
HttpEndpointNotEnabledException, an unknown secret a SecretsErrorException, an unknown, ended
or expired transaction a TransactionNotFoundException. A statement that fails inside a
transaction ends it (rolled back), as on AWS.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg

from pipeline.local.loopback import AwsError
from pipeline.local.rds_data.sql import SqlError, translate
from pipeline.local.rds_data.values import (
    bad_request,
    column_metadata,
    json_value,
    parameter_values,
    prepare_connection,
)
from pipeline.local.rds_data.values import (
    field as to_field,
)

RESPONSE_LIMIT_BYTES = 1024 * 1024  # the service's response size limit (1 MiB)
TOO_LARGE = "Database returned more than the allowed response size limit"
TRANSACTION_IDLE_SECONDS = 180.0  # a transaction no call used for 3 minutes is rolled back
STATEMENT_TIMEOUT_MS = 45_000  # the service waits 45 s for a statement
IDLE_CONNECTIONS = 4  # pooled connections kept per database


@dataclass(frozen=True)
class Target:
    """The PostgreSQL server behind the emulator and what it answers for."""

    host: str
    port: int
    user: str
    resource_arns: frozenset[str]
    secret_arns: frozenset[str]
    default_database: str = "postgres"

    def dsn(self, database: str) -> str:
        return f"host={self.host} port={self.port} user={self.user} dbname={database}"


@dataclass
class _Transaction:
    conn: psycopg.Connection
    database: str
    resource_arn: str
    busy: threading.Lock = field(default_factory=threading.Lock)
    last_used: float = field(default_factory=time.monotonic)


class DataApi:
    """The five calls, thread-safe: the HTTP server answers each request in its own thread."""

    def __init__(
        self, target: Target, statement_timeout_s: float = STATEMENT_TIMEOUT_MS / 1000
    ) -> None:
        self.target = target
        self.statement_timeout_s = statement_timeout_s  # how long a call waits for its statement
        self._lock = threading.Lock()
        self._idle: dict[str, list[psycopg.Connection]] = {}
        self._transactions: dict[str, _Transaction] = {}
        self._ended: dict[str, str] = {}  # transaction id -> why it is gone
        self._type_names: dict[tuple[str, int], tuple[str, str]] = {}

    # -- the calls ----------------------------------------------------------------------------

    def execute_statement(self, request: Mapping[str, Any]) -> dict[str, Any]:
        self._check_target(request)
        sql, names = self._statement(request)
        values = parameter_values(request.get("parameters") or [], names)
        if request.get("continueAfterTimeout") and not request.get("transactionId"):
            return self._continuing(request, sql, values)
        with self._connection(request) as (conn, database), psycopg.RawCursor(conn) as cur:
            _run(cur, sql, values)
            return self._result(cur, database, request)

    def _continuing(
        self, request: Mapping[str, Any], sql: str, values: list[Any]
    ) -> dict[str, Any]:
        """`continueAfterTimeout`: the call still times out, the statement runs on (a DDL
        statement such as an index build), on a connection of its own that is then closed."""
        database = self._database(request)
        conn = self._connect(database)
        outcome: dict[str, Any] = {}

        def work() -> None:
            try:
                with psycopg.RawCursor(conn) as cur:
                    cur.execute("SET statement_timeout = 0")
                    _run(cur, sql, values)
                    outcome["result"] = self._result(cur, database, request)
            except AwsError as fault:
                outcome["error"] = fault
            finally:
                conn.close()

        worker = threading.Thread(target=work, name="continue-after-timeout", daemon=True)
        worker.start()
        worker.join(self.statement_timeout_s)
        if worker.is_alive():
            raise AwsError("StatementTimeoutException", "Request timed out")
        if "error" in outcome:
            raise outcome["error"]
        return dict(outcome["result"])

    def batch_execute_statement(self, request: Mapping[str, Any]) -> dict[str, Any]:
        self._check_target(request)
        sql, names = self._statement(request)
        sets = request.get("parameterSets") or []
        rows = [parameter_values(parameters, names) for parameters in sets] or [[]]
        with self._connection(request, atomic=True) as (conn, _), psycopg.RawCursor(conn) as cur:
            for values in rows:
                _run(cur, sql, values)
        return {"updateResults": [{"generatedFields": []} for _ in sets]}

    def begin_transaction(self, request: Mapping[str, Any]) -> dict[str, Any]:
        self._check_target(request)
        database = self._database(request)
        conn = self._checkout(database)
        conn.autocommit = False
        transaction_id = secrets.token_urlsafe(96)
        with self._lock:
            self._transactions[transaction_id] = _Transaction(
                conn, database, request["resourceArn"]
            )
        return {"transactionId": transaction_id}

    def commit_transaction(self, request: Mapping[str, Any]) -> dict[str, Any]:
        self._end(request, commit=True)
        return {"transactionStatus": "Transaction Committed"}

    def rollback_transaction(self, request: Mapping[str, Any]) -> dict[str, Any]:
        self._end(request, commit=False)
        return {"transactionStatus": "Rollback Complete"}

    def close(self) -> None:
        """Roll back open transactions and close every connection."""
        with self._lock:
            conns = [t.conn for t in self._transactions.values()]
            conns += [c for idle in self._idle.values() for c in idle]
            self._transactions.clear()
            self._idle.clear()
        for conn in conns:
            conn.close()

    # -- requests -----------------------------------------------------------------------------

    def _check_target(self, request: Mapping[str, Any]) -> None:
        resource, secret = request.get("resourceArn"), request.get("secretArn")
        if not isinstance(resource, str) or not isinstance(secret, str):
            raise bad_request("resourceArn and secretArn are required")
        if resource not in self.target.resource_arns:
            raise AwsError(
                "HttpEndpointNotEnabledException",
                f"HttpEndpoint is not enabled for resource {resource}",
            )
        if secret not in self.target.secret_arns:
            raise AwsError(
                "SecretsErrorException",
                f"Secrets Manager can't find the specified secret: {secret}",
            )

    def _statement(self, request: Mapping[str, Any]) -> tuple[str, tuple[str, ...]]:
        sql = request.get("sql")
        if not isinstance(sql, str) or not sql.strip():
            raise bad_request("SQL statement must be provided")
        if request.get("schema"):
            raise bad_request("The schema parameter isn't supported.")
        try:
            translated = translate(sql)
        except SqlError as exc:
            raise bad_request(str(exc)) from None
        return translated.sql, translated.names

    def _database(self, request: Mapping[str, Any]) -> str:
        if request.get("schema"):
            raise bad_request("The schema parameter isn't supported.")
        return request.get("database") or self.target.default_database

    # -- connections --------------------------------------------------------------------------

    @contextmanager
    def _connection(
        self, request: Mapping[str, Any], atomic: bool = False
    ) -> Iterator[tuple[psycopg.Connection, str]]:
        """The request's transaction's connection, or a pooled one in autocommit (one
        transaction around the whole call when atomic)."""
        transaction_id = request.get("transactionId")
        if transaction_id:
            transaction = self._transaction(transaction_id)
            if not transaction.busy.acquire(blocking=False):
                raise AwsError("DatabaseErrorException", "Transaction is still running a query")
            try:
                yield transaction.conn, transaction.database
            except AwsError as fault:
                if fault.code in ("DatabaseErrorException", "StatementTimeoutException"):
                    self._abort(transaction_id, transaction)
                raise
            finally:
                transaction.last_used = time.monotonic()
                transaction.busy.release()
            return
        database = self._database(request)
        conn = self._checkout(database)
        try:
            if atomic:
                with conn.transaction():
                    yield conn, database
            else:
                yield conn, database
        finally:
            self._checkin(database, conn)

    def _checkout(self, database: str) -> psycopg.Connection:
        with self._lock:
            idle = self._idle.get(database) or []
            while idle:
                conn = idle.pop()
                if not conn.closed:
                    return conn
        return self._connect(database)

    def _connect(self, database: str) -> psycopg.Connection:
        """A new session: it starts with the database's own settings (ALTER DATABASE ... SET)."""
        try:
            conn = psycopg.connect(
                self.target.dsn(database),
                autocommit=True,
                connect_timeout=10,
                options=f"-c TimeZone=UTC -c statement_timeout={self._timeout_ms}",
            )
        except psycopg.OperationalError as exc:
            message = str(exc).strip().splitlines()[-1]
            if "does not exist" in message:
                raise AwsError(
                    "DatabaseErrorException", f"FATAL: {_after_fatal(message)}"
                ) from None
            raise AwsError("DatabaseUnavailableException", message, 504) from None
        prepare_connection(conn)
        return conn

    @property
    def _timeout_ms(self) -> int:
        return int(self.statement_timeout_s * 1000)

    def _checkin(self, database: str, conn: psycopg.Connection) -> None:
        if conn.closed or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.close()
            return
        conn.autocommit = True
        with self._lock:
            idle = self._idle.setdefault(database, [])
            if len(idle) < IDLE_CONNECTIONS:
                idle.append(conn)
                return
        conn.close()

    # -- transactions -------------------------------------------------------------------------

    def _transaction(self, transaction_id: str) -> _Transaction:
        self._expire()
        with self._lock:
            transaction = self._transactions.get(transaction_id)
            why = self._ended.get(transaction_id)
        if transaction is None:
            reason = f" {why}" if why else ""
            raise AwsError(
                "TransactionNotFoundException",
                f"Transaction {transaction_id} is not found.{reason}",
                404,
            )
        return transaction

    def _end(self, request: Mapping[str, Any], commit: bool) -> None:
        self._check_target(request)
        transaction_id = request.get("transactionId") or ""
        transaction = self._transaction(transaction_id)
        if not transaction.busy.acquire(blocking=False):
            raise AwsError("DatabaseErrorException", "Transaction is still running a query")
        try:
            with self._lock:
                self._transactions.pop(transaction_id, None)
                self._ended[transaction_id] = (
                    "One previous call resulted in a termination of your transaction."
                )
            try:
                if commit:
                    transaction.conn.commit()
                else:
                    transaction.conn.rollback()
            except psycopg.Error as exc:
                transaction.conn.close()
                raise database_error(exc) from None
            self._checkin(transaction.database, transaction.conn)
        finally:
            transaction.busy.release()

    def _abort(self, transaction_id: str, transaction: _Transaction) -> None:
        with self._lock:
            self._transactions.pop(transaction_id, None)
            self._ended[transaction_id] = (
                "Transaction has been aborted due to an error from a previous call."
            )
        transaction.conn.rollback()
        self._checkin(transaction.database, transaction.conn)

    def _expire(self) -> None:
        """Roll back transactions no call used for three minutes, as the service does."""
        now = time.monotonic()
        with self._lock:
            stale = {
                tid: t
                for tid, t in self._transactions.items()
                if now - t.last_used > TRANSACTION_IDLE_SECONDS and not t.busy.locked()
            }
            for tid in stale:
                del self._transactions[tid]
                self._ended[tid] = "Transaction may be expired."
        for transaction in stale.values():
            transaction.conn.close()

    # -- results ------------------------------------------------------------------------------

    def _result(
        self, cur: psycopg.RawCursor, database: str, request: Mapping[str, Any]
    ) -> dict[str, Any]:
        status = (cur.statusmessage or "").split(" ", 1)[0]
        updated = cur.rowcount if status in ("INSERT", "UPDATE", "DELETE", "MERGE") else 0
        answer: dict[str, Any] = {"numberOfRecordsUpdated": max(updated, 0)}
        if cur.description is None:
            answer["generatedFields"] = []
            return answer
        columns = cur.description
        oids = [c.type_code for c in columns]
        options = request.get("resultSetOptions") or {}
        as_json = request.get("formatRecordsAs") == "JSON"
        names = self._names(cur.connection, database, oids)
        size = 0
        records: list[Any] = []
        for row in cur:
            if as_json:
                record: Any = {
                    c.name: json_value(v, names[i][0])
                    for i, (c, v) in enumerate(zip(columns, row, strict=True))
                }
            else:
                record = [to_field(v, oids[i], options) for i, v in enumerate(row)]
            size += len(json.dumps(record)) + 1
            if size > RESPONSE_LIMIT_BYTES:
                raise bad_request(TOO_LARGE)
            records.append(record)
        if as_json:
            answer["formattedRecords"] = json.dumps(records)
        else:
            answer["records"] = records
        if request.get("includeResultMetadata"):
            answer["columnMetadata"] = [
                column_metadata(c, *names[i]) for i, c in enumerate(columns)
            ]
        return answer

    def _names(
        self, conn: psycopg.Connection, database: str, oids: list[int]
    ) -> list[tuple[str, str]]:
        """(typname, element typname) of each column's type, cached per database."""
        missing = sorted({o for o in oids if (database, o) not in self._type_names})
        if missing:
            with psycopg.RawCursor(conn) as cur:
                rows = cur.execute(
                    "SELECT t.oid, t.typname, coalesce(e.typname, t.typname) FROM pg_type t "
                    "LEFT JOIN pg_type e ON e.oid = t.typelem AND t.typcategory = 'A' "
                    "WHERE t.oid = ANY($1::oid[])",
                    [missing],
                ).fetchall()
            for oid, name, element in rows:
                self._type_names[(database, oid)] = (name, element)
        return [self._type_names.get((database, o), ("unknown", "unknown")) for o in oids]


def _run(cur: psycopg.RawCursor, sql: str, values: list[Any]) -> None:
    """One statement with its positional values ($1, $2, ...: a RawCursor leaves `%` alone);
    PostgreSQL's errors as the service's."""
    try:
        cur.execute(sql, values, prepare=False)
    except psycopg.errors.QueryCanceled:
        raise AwsError("StatementTimeoutException", "Request timed out") from None
    except psycopg.Error as exc:
        raise database_error(exc) from None


def database_error(exc: psycopg.Error) -> AwsError:
    """PostgreSQL's error as the service words it: `ERROR: <message>; Detail: ...; Hint: ...;
    Position: N; SQLState: XXXXX`."""
    diag = exc.diag
    parts = [f"{diag.severity or 'ERROR'}: {diag.message_primary or str(exc).strip()}"]
    for label, value in (
        ("Detail", diag.message_detail),
        ("Hint", diag.message_hint),
        ("Position", diag.statement_position),
        ("Where", diag.context),
    ):
        if value:
            parts.append(f"{label}: {value}")
    if diag.sqlstate:
        parts.append(f"SQLState: {diag.sqlstate}")
    return AwsError("DatabaseErrorException", "; ".join(parts))


def _after_fatal(message: str) -> str:
    return message.split("FATAL:", 1)[-1].strip()
