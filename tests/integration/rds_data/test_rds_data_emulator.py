"""The RDS Data API emulator, driven as the pipeline drives Aurora: plain boto3 `rds-data`
clients against `python -m pipeline.local.rds_data` in front of the session's PostgreSQL +
pgvector. Values both ways, `vector` columns, batches, transactions, and the service's refusals
(errors, ARNs, response size, multi-statements, array parameters) in the shapes botocore
parses."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import botocore.exceptions
import pytest
import requests

from tests.conftest import RdsData


@pytest.fixture
def call(rds_data: RdsData):
    """`call(operation, **params)`: one rds-data call with the emulator's ARNs and database."""
    client = rds_data.client()

    def run(operation: str, **params: Any) -> dict[str, Any]:
        common = {"resourceArn": rds_data.cluster_arn, "secretArn": rds_data.secret_arn}
        if operation in ("execute_statement", "batch_execute_statement", "begin_transaction"):
            common["database"] = rds_data.database
        return getattr(client, operation)(**{**common, **params})

    run.client = client  # type: ignore[attr-defined]
    return run


@pytest.fixture
def table(call) -> str:
    """A fresh table name (the session shares one database)."""
    return f"t_{uuid.uuid4().hex[:10]}"


def p(name: str, typehint: str | None = None, **value: Any) -> dict[str, Any]:
    parameter: dict[str, Any] = {"name": name, "value": value}
    if typehint:
        parameter["typeHint"] = typehint
    return parameter


def error_of(exc: pytest.ExceptionInfo) -> tuple[str, str, int]:
    response = exc.value.response
    return (
        response["Error"]["Code"],
        response["Error"]["Message"],
        response["ResponseMetadata"]["HTTPStatusCode"],
    )


def test_every_value_type_goes_in_and_comes_back_typed(call, table):
    call(
        "execute_statement",
        sql=f"CREATE TABLE {table} (i8 bigint, i4 int, i2 smallint, f8 float8, f4 real, "
        "t text, v varchar(20), b bool, raw bytea, n numeric(10,3), ts timestamp, d date, "
        "tm time, u uuid, j jsonb)",
    )
    some_uuid = str(uuid.uuid4())
    inserted = call(
        "execute_statement",
        sql=f"INSERT INTO {table} VALUES (:i8, :i4, :i2, :f8, :f4, :t, :v, :b, :raw, :n, :ts, "
        ":d, :tm, :u, :j)",
        parameters=[
            p("i8", longValue=2**40),
            p("i4", longValue=-7),
            p("i2", longValue=3),
            p("f8", doubleValue=0.125),
            p("f4", doubleValue=1.5),
            p("t", stringValue="it's :not a parameter"),
            p("v", stringValue="varchar"),
            p("b", booleanValue=True),
            p("raw", blobValue=b"\x00\x01\xff"),
            p("n", "DECIMAL", stringValue="12.345"),
            p("ts", "TIMESTAMP", stringValue="2026-01-02 03:04:05.678"),
            p("d", "DATE", stringValue="2026-01-02"),
            p("tm", "TIME", stringValue="03:04:05"),
            p("u", "UUID", stringValue=some_uuid),
            p("j", "JSON", stringValue='{"a": [1, 2]}'),
        ],
    )
    assert inserted["numberOfRecordsUpdated"] == 1

    answer = call("execute_statement", sql=f"SELECT * FROM {table}")
    assert answer["records"] == [
        [
            {"longValue": 2**40},
            {"longValue": -7},
            {"longValue": 3},
            {"doubleValue": 0.125},
            {"doubleValue": 1.5},
            {"stringValue": "it's :not a parameter"},
            {"stringValue": "varchar"},
            {"booleanValue": True},
            {"blobValue": b"\x00\x01\xff"},  # botocore decodes the base64
            {"stringValue": "12.345"},
            {"stringValue": "2026-01-02 03:04:05.678"},
            {"stringValue": "2026-01-02"},
            {"stringValue": "03:04:05"},
            {"stringValue": some_uuid},
            {"stringValue": '{"a": [1, 2]}'},
        ]
    ]
    assert answer["numberOfRecordsUpdated"] == 0


def test_a_string_is_varchar_so_typed_columns_need_the_type_hint(call, table):
    """As on AWS: a stringValue without a typeHint is a varchar, which PostgreSQL will not
    put in a timestamp column without a cast."""
    call("execute_statement", sql=f"CREATE TABLE {table} (ts timestamp)")
    with pytest.raises(call.client.exceptions.DatabaseErrorException) as refused:
        call(
            "execute_statement",
            sql=f"INSERT INTO {table} VALUES (:ts)",
            parameters=[p("ts", stringValue="2026-01-02 03:04:05")],
        )
    assert (
        "is of type timestamp without time zone but expression is of type character"
        in (error_of(refused)[1])
    )
    call(
        "execute_statement",
        sql=f"INSERT INTO {table} VALUES (:ts::timestamp)",
        parameters=[p("ts", stringValue="2026-01-02 03:04:05")],
    )


def test_nulls_both_ways(call, table):
    call("execute_statement", sql=f"CREATE TABLE {table} (a int, b text, c float8)")
    call(
        "execute_statement",
        sql=f"INSERT INTO {table} VALUES (:a, :b, :c)",
        parameters=[p("a", isNull=True), p("b", isNull=True), p("c", doubleValue=2.0)],
    )
    answer = call("execute_statement", sql=f"SELECT a, b, c FROM {table}")
    assert answer["records"] == [[{"isNull": True}, {"isNull": True}, {"doubleValue": 2.0}]]


def test_arrays_come_back_as_array_values(call):
    answer = call(
        "execute_statement",
        sql="SELECT ARRAY[1,2,NULL]::int8[], ARRAY['a','b'], ARRAY[[1.5,2],[3,4]]::float8[], "
        "ARRAY[true,false], ARRAY[1.25]::numeric[]",
    )
    assert answer["records"] == [
        [
            {"arrayValue": {"longValues": [1, 2, None]}},
            {"arrayValue": {"stringValues": ["a", "b"]}},
            {
                "arrayValue": {
                    "arrayValues": [{"doubleValues": [1.5, 2.0]}, {"doubleValues": [3.0, 4.0]}]
                }
            },
            {"arrayValue": {"booleanValues": [True, False]}},
            {"arrayValue": {"stringValues": ["1.25"]}},
        ]
    ]


def test_array_parameters_are_refused_as_the_service_refuses_them(call):
    with pytest.raises(call.client.exceptions.BadRequestException) as refused:
        call(
            "execute_statement",
            sql="SELECT :a",
            parameters=[p("a", arrayValue={"longValues": [1, 2]})],
        )
    assert error_of(refused)[1] == "Array parameters are not supported."


def test_a_vector_column_round_trips_as_its_text_form(call, table):
    call("execute_statement", sql="CREATE EXTENSION IF NOT EXISTS vector")
    call("execute_statement", sql=f"CREATE TABLE {table} (id int, embedding vector(3))")
    call(
        "batch_execute_statement",
        sql=f"INSERT INTO {table} VALUES (:id, :v::vector)",
        parameterSets=[
            [p("id", longValue=1), p("v", stringValue="[1,2,3]")],
            [p("id", longValue=2), p("v", stringValue="[0,0,1]")],
        ],
    )
    answer = call(
        "execute_statement",
        sql=f"SELECT id, embedding, embedding <-> :q::vector AS distance FROM {table} "
        "ORDER BY embedding <-> :q::vector LIMIT 2",
        parameters=[p("q", stringValue="[1,2,3]")],
        includeResultMetadata=True,
    )
    assert answer["records"] == [
        [{"longValue": 1}, {"stringValue": "[1,2,3]"}, {"doubleValue": 0.0}],
        [{"longValue": 2}, {"stringValue": "[0,0,1]"}, {"doubleValue": 3.0}],
    ]
    metadata = answer["columnMetadata"]
    assert [(c["name"], c["typeName"], c["type"]) for c in metadata] == [
        ("id", "int4", 4),
        ("embedding", "vector", 1111),
        ("distance", "float8", 8),
    ]


def test_casts_comments_and_literals_are_not_parameters(call):
    answer = call(
        "execute_statement",
        sql="SELECT ':x'::text AS a, $$ :y $$ AS b, E'\\' :z' AS c, \"l:w\".q, "
        "/* :c1 */ :real::int8 + 1 AS d -- :c2\n"
        'FROM (SELECT 1 AS q) AS "l:w"',
        parameters=[p("real", longValue=41)],
    )
    assert answer["records"] == [
        [
            {"stringValue": ":x"},
            {"stringValue": " :y "},
            {"stringValue": "' :z"},
            {"longValue": 1},
            {"longValue": 42},
        ]
    ]


def test_a_missing_parameter_is_refused(call):
    with pytest.raises(call.client.exceptions.BadRequestException):
        call("execute_statement", sql="SELECT :a, :b", parameters=[p("a", longValue=1)])


def test_metadata_and_json_records(call):
    answer = call(
        "execute_statement",
        sql="SELECT 1::int8 AS n, 'x'::text AS s, NULL::text AS z, 2.5::numeric AS d, "
        "'{\"k\": 1}'::jsonb AS j, ARRAY[1,2] AS a",
        formatRecordsAs="JSON",
        includeResultMetadata=True,
    )
    assert "records" not in answer
    assert json.loads(answer["formattedRecords"]) == [
        {"n": 1, "s": "x", "z": None, "d": "2.5", "j": {"k": 1}, "a": [1, 2]}
    ]
    assert [(c["label"], c["typeName"]) for c in answer["columnMetadata"]] == [
        ("n", "int8"),
        ("s", "text"),
        ("z", "text"),
        ("d", "numeric"),
        ("j", "jsonb"),
        ("a", "_int4"),
    ]


def test_result_set_options(call):
    answer = call(
        "execute_statement",
        sql="SELECT 3::numeric, 2.5::numeric, 9007199254740993::int8",
        resultSetOptions={"decimalReturnType": "DOUBLE_OR_LONG", "longReturnType": "STRING"},
    )
    assert answer["records"] == [
        [{"longValue": 3}, {"doubleValue": 2.5}, {"stringValue": "9007199254740993"}]
    ]


def test_batch_execute_and_records_updated(call, table):
    call("execute_statement", sql=f"CREATE TABLE {table} (k text PRIMARY KEY, n int)")
    batch = call(
        "batch_execute_statement",
        sql=f"INSERT INTO {table} VALUES (:k, :n)",
        parameterSets=[[p("k", stringValue=k), p("n", longValue=i)] for i, k in enumerate("abc")],
    )
    assert batch["updateResults"] == [{"generatedFields": []}] * 3
    updated = call(
        "execute_statement",
        sql=f"UPDATE {table} SET n = n + 10 WHERE n >= :low",
        parameters=[p("low", longValue=1)],
    )
    assert updated["numberOfRecordsUpdated"] == 2
    count = call("execute_statement", sql=f"SELECT count(*), sum(n) FROM {table}")
    assert count["records"] == [[{"longValue": 3}, {"longValue": 23}]]


def test_a_failing_batch_writes_nothing(call, table):
    call("execute_statement", sql=f"CREATE TABLE {table} (k text PRIMARY KEY)")
    with pytest.raises(call.client.exceptions.DatabaseErrorException):
        call(
            "batch_execute_statement",
            sql=f"INSERT INTO {table} VALUES (:k)",
            parameterSets=[[p("k", stringValue="a")], [p("k", stringValue="a")]],
        )
    count = call("execute_statement", sql=f"SELECT count(*) FROM {table}")
    assert count["records"] == [[{"longValue": 0}]]


def test_a_transaction_committed_and_one_rolled_back(call, table):
    call("execute_statement", sql=f"CREATE TABLE {table} (k text)")

    def count() -> int:
        return call("execute_statement", sql=f"SELECT count(*) FROM {table}")["records"][0][0][
            "longValue"
        ]

    committed = call("begin_transaction")["transactionId"]
    call(
        "execute_statement",
        sql=f"INSERT INTO {table} VALUES (:k)",
        parameters=[p("k", stringValue="kept")],
        transactionId=committed,
    )
    assert count() == 0  # not visible outside the transaction before its commit
    answer = call("commit_transaction", transactionId=committed)
    assert answer["transactionStatus"] == "Transaction Committed"
    assert count() == 1

    rolled_back = call("begin_transaction")["transactionId"]
    call(
        "batch_execute_statement",
        sql=f"INSERT INTO {table} VALUES (:k)",
        parameterSets=[[p("k", stringValue="x")], [p("k", stringValue="y")]],
        transactionId=rolled_back,
    )
    answer = call("rollback_transaction", transactionId=rolled_back)
    assert answer["transactionStatus"] == "Rollback Complete"
    assert count() == 1

    with pytest.raises(call.client.exceptions.TransactionNotFoundException) as gone:
        call("commit_transaction", transactionId=rolled_back)
    _, message, status = error_of(gone)
    assert status == 404 and message.startswith(f"Transaction {rolled_back} is not found")


def test_an_error_inside_a_transaction_ends_it(call, table):
    call("execute_statement", sql=f"CREATE TABLE {table} (k text)")
    transaction = call("begin_transaction")["transactionId"]
    call("execute_statement", sql=f"INSERT INTO {table} VALUES ('a')", transactionId=transaction)
    with pytest.raises(call.client.exceptions.DatabaseErrorException):
        call("execute_statement", sql="SELECT 1/0", transactionId=transaction)
    with pytest.raises(call.client.exceptions.TransactionNotFoundException) as gone:
        call("execute_statement", sql="SELECT 1", transactionId=transaction)
    assert "aborted due to an error from a previous call" in error_of(gone)[1]
    count = call("execute_statement", sql=f"SELECT count(*) FROM {table}")
    assert count["records"] == [[{"longValue": 0}]]


def test_an_sql_error_is_the_services_database_error(call):
    with pytest.raises(call.client.exceptions.DatabaseErrorException) as refused:
        call("execute_statement", sql="SELECT * FROM no_such_table")
    assert error_of(refused) == (
        "DatabaseErrorException",
        'ERROR: relation "no_such_table" does not exist; Position: 15; SQLState: 42P01',
        400,
    )


def test_unknown_arns_and_transactions_are_refused(rds_data, call):
    client = call.client
    with pytest.raises(client.exceptions.HttpEndpointNotEnabledException):
        client.execute_statement(
            resourceArn=rds_data.cluster_arn.replace("imgsim-vector", "other"),
            secretArn=rds_data.secret_arn,
            sql="SELECT 1",
        )
    with pytest.raises(client.exceptions.SecretsErrorException):
        client.execute_statement(
            resourceArn=rds_data.cluster_arn,
            secretArn=rds_data.secret_arn + "x",
            sql="SELECT 1",
        )
    with pytest.raises(client.exceptions.TransactionNotFoundException):
        call("execute_statement", sql="SELECT 1", transactionId="no-such-transaction")


def test_an_unsigned_request_is_refused(rds_data):
    answer = requests.post(f"{rds_data.url}/Execute", json={"sql": "SELECT 1"}, timeout=10)
    assert answer.status_code == 403
    assert answer.headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"


def test_the_response_size_limit(call):
    # 1,000 rows of 900 characters fit in 1 MiB; 2,000 do not
    fits = call("execute_statement", sql="SELECT repeat('x', 900) FROM generate_series(1, 1000)")
    assert len(fits["records"]) == 1000
    with pytest.raises(call.client.exceptions.BadRequestException) as refused:
        call("execute_statement", sql="SELECT repeat('x', 900) FROM generate_series(1, 2000)")
    assert error_of(refused)[1] == "Database returned more than the allowed response size limit"


def test_one_statement_per_call(call):
    with pytest.raises(call.client.exceptions.BadRequestException) as refused:
        call("execute_statement", sql="SELECT 1; SELECT 2")
    assert error_of(refused)[1] == "Multistatements aren't supported."
    # a trailing semicolon and comment are one statement
    assert call("execute_statement", sql="SELECT 1; -- done\n")["records"] == [[{"longValue": 1}]]


def test_database_selects_the_postgresql_database(call, rds_data):
    mine = call("execute_statement", sql="SELECT current_database()")
    other = call("execute_statement", sql="SELECT current_database()", database="postgres")
    assert mine["records"] == [[{"stringValue": rds_data.database}]]
    assert other["records"] == [[{"stringValue": "postgres"}]]
    with pytest.raises(call.client.exceptions.DatabaseErrorException) as refused:
        call("execute_statement", sql="SELECT 1", database="no_such_db")
    assert 'database "no_such_db" does not exist' in error_of(refused)[1]


def test_blob_parameters_are_base64_on_the_wire(rds_data, call):
    """botocore encodes blobValue as base64; what PostgreSQL receives is the raw bytes."""
    answer = call(
        "execute_statement",
        sql="SELECT length(:b), encode(:b, 'base64')",
        parameters=[p("b", blobValue=b"abc")],
    )
    assert answer["records"] == [
        [{"longValue": 3}, {"stringValue": base64.b64encode(b"abc").decode()}]
    ]


def test_botocore_client_errors_are_its_exception_classes(call):
    """Every refusal above arrives as the modelled exception class (botocore found the code)."""
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        call("execute_statement", sql="SELEC 1")
    assert type(refused.value).__name__ == "DatabaseErrorException"
    assert error_of(refused)[1].endswith("SQLState: 42601")
