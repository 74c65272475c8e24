"""The Data API adapter's typing of values, and its wait on a resuming cluster (botocore's
Stubber answers as the service does: a paused cluster's first calls are refused)."""

from __future__ import annotations

from dataclasses import replace

import boto3
import pytest
from botocore.stub import Stubber

from pipeline.settings import Settings
from pipeline.storage import data_api
from pipeline.storage.data_api import DataApi, DataApiNotConfigured, chunks, field_value, parameter

SETTINGS = replace(
    Settings(),
    vector_db_cluster_arn="arn:aws:rds:us-east-1:123456789012:cluster:imgsim",
    vector_db_secret_arn="arn:aws:secretsmanager:us-east-1:123456789012:secret:imgsim-AbCdEf",
)


def test_values_are_typed_both_ways():
    assert parameter("a", None) == {"name": "a", "value": {"isNull": True}}
    assert parameter("a", True)["value"] == {"booleanValue": True}
    assert parameter("a", 3)["value"] == {"longValue": 3}
    assert parameter("a", 0.5)["value"] == {"doubleValue": 0.5}
    assert parameter("a", "x")["value"] == {"stringValue": "x"}
    with pytest.raises(TypeError, match="not a Data API type"):
        parameter("a", object())
    assert [field_value(f) for f in ({"isNull": True}, {"longValue": 2}, {"stringValue": "s"})] == [
        None,
        2,
        "s",
    ]


def test_no_cluster_is_a_clear_error():
    with pytest.raises(DataApiNotConfigured, match="IMGSIM_VECTOR_DB_CLUSTER_ARN"):
        DataApi(Settings())


def test_chunks_keep_each_request_under_its_size():
    sets = [{"v": "x" * 40} for _ in range(10)]
    groups = list(chunks(sets, 100))
    assert [len(g) for g in groups] == [2, 2, 2, 2, 2]
    assert list(chunks([{"v": "x" * 500}], 100)) == [[{"v": "x" * 500}]]  # one alone, still sent


def test_a_resuming_cluster_is_waited_for(monkeypatch):
    monkeypatch.setattr(data_api, "RESUME_POLL_S", 0.01)
    client = boto3.client("rds-data", region_name="us-east-1")
    stub = Stubber(client)
    for _ in range(2):
        stub.add_client_error(
            "execute_statement", "DatabaseResumingException", "resuming", http_status_code=400
        )
    stub.add_response("execute_statement", {"records": [[{"longValue": 1}]]})
    with stub:
        assert DataApi(SETTINGS, client).execute("SELECT 1") == [[1]]
    stub.assert_no_pending_responses()
