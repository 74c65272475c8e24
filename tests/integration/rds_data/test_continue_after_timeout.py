"""A statement that outlasts the Data API's call timeout: the call fails with
StatementTimeoutException, and with `continueAfterTimeout` the statement still completes, which
the vector index's build (DataApi.execute_long) waits for by polling. The emulator runs in
process here with a one-second timeout instead of the service's 45 s."""

from __future__ import annotations

import uuid
from dataclasses import replace

import boto3
import pytest

from pipeline.local import postgres
from pipeline.local.config import vector_db_arns
from pipeline.local.rds_data.server import RdsDataEmulator
from pipeline.local.rds_data.service import Target
from pipeline.settings import Settings
from pipeline.storage import data_api
from pipeline.storage.data_api import DataApi


@pytest.fixture
def quick_timeout(pg_server):
    cluster, secret = vector_db_arns("us-east-1")
    postgres.create_database(pg_server, "imgsim")
    target = Target(
        "127.0.0.1",
        pg_server.port,
        postgres.SUPERUSER,
        frozenset([cluster]),
        frozenset([secret]),
        "imgsim",
    )
    emulator = RdsDataEmulator(target).start()
    emulator.api.statement_timeout_s = 1.0
    settings = replace(
        Settings(), vector_db_cluster_arn=cluster, vector_db_secret_arn=secret
    ).with_endpoint(emulator.url, ("rds-data",))
    client = boto3.client(
        "rds-data",
        endpoint_url=emulator.url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    try:
        yield DataApi(settings, client)
    finally:
        emulator.stop()


def test_a_long_statement_times_out_the_call_and_runs_on_when_asked(quick_timeout, monkeypatch):
    db = quick_timeout
    with pytest.raises(db.client.exceptions.StatementTimeoutException):
        db.execute("SELECT pg_sleep(3)")  # without continueAfterTimeout: cancelled
    monkeypatch.setattr(data_api, "POLL_SECONDS", 0.2)
    table = f"slow_{uuid.uuid4().hex[:8]}"
    done = f"SELECT to_regclass('{table}') IS NOT NULL"
    db.execute_long(f"CREATE TABLE {table} AS SELECT 1 AS x FROM pg_sleep(3)", done, timeout_s=30)
    assert db.execute(done) == [[True]]


def test_a_statement_run_on_starts_a_session_with_the_databases_settings(quick_timeout):
    """A statement that runs on past the call's timeout gets a session of its own, which starts
    with the database's settings (as a new connection does), even where earlier statements
    left pooled sessions that started before a setting."""
    db = quick_timeout
    db.execute("SELECT 1")  # a pooled session, started before the setting
    db.execute("ALTER DATABASE imgsim SET maintenance_work_mem = '96MB'")
    try:
        answer = db.client.execute_statement(
            resourceArn=db.settings.vector_db_cluster_arn,
            secretArn=db.settings.vector_db_secret_arn,
            database="imgsim",
            sql="SELECT current_setting('maintenance_work_mem')",
            continueAfterTimeout=True,
        )
    finally:
        db.execute("ALTER DATABASE imgsim RESET maintenance_work_mem")
    assert answer["records"] == [[{"stringValue": "96MB"}]]
