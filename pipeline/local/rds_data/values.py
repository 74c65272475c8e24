"""The Data API's typed values, both ways, as the service maps them for Aurora PostgreSQL.

In: a parameter's Field union becomes the value PostgreSQL receives with the type the service
gives it: a string is `varchar` (so a timestamp, uuid, json or numeric column needs the
parameter's typeHint, or a cast in SQL, as on AWS), a long is `int8`, a double `float8`, a blob
`bytea`; typeHints DECIMAL, TIMESTAMP, DATE, TIME, UUID and JSON send the string as that type.
Array parameters are refused, as the service refuses them.

Out: a column's value becomes the Field its PostgreSQL type gives: integers longValue, float4
and float8 doubleValue, bool booleanValue, bytea blobValue, NULL isNull, arrays arrayValue, and
everything else (text, numeric, dates and times, uuid, json, pgvector's `vector`) stringValue
of PostgreSQL's own text form.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any

import psycopg
from psycopg.types.json import Json
from psycopg.types.numeric import Int8
from psycopg.types.string import StrDumperVarchar, TextLoader

from pipeline.local.loopback import AwsError

# PostgreSQL types read as their text form (psycopg would make Python objects of them).
TEXT_TYPES = (
    "numeric",
    "date",
    "time",
    "timetz",
    "timestamp",
    "timestamptz",
    "interval",
    "uuid",
    "json",
    "jsonb",
    "inet",
    "cidr",
    "int4range",
    "int8range",
    "numrange",
    "daterange",
    "tsrange",
    "tstzrange",
)
INT8_OID, NUMERIC_OID = 20, 1700

# java.sql.Types of the columns, as the service's columnMetadata reports them (by type name).
JDBC_TYPES = {
    "bool": -7,
    "bytea": -2,
    "char": 1,
    "bpchar": 1,
    "name": 12,
    "text": 12,
    "varchar": 12,
    "int8": -5,
    "oid": -5,
    "int2": 5,
    "int4": 4,
    "float4": 7,
    "float8": 8,
    "money": 8,
    "numeric": 2,
    "date": 91,
    "time": 92,
    "timetz": 92,
    "timestamp": 93,
    "timestamptz": 93,
}
JDBC_ARRAY, JDBC_OTHER = 2003, 1111
SIGNED = {"int2", "int4", "int8", "float4", "float8", "numeric", "money"}
CASE_SENSITIVE = {"text", "varchar", "bpchar", "char", "name", "json", "jsonb", "xml"}


def prepare_connection(conn: psycopg.Connection) -> None:
    """Strings go out as varchar and the types above come back as text, on this connection."""
    conn.adapters.register_dumper(str, StrDumperVarchar)
    for name in TEXT_TYPES:
        conn.adapters.register_loader(name, TextLoader)


def bad_request(message: str) -> AwsError:
    return AwsError("BadRequestException", message)


def parameter_values(parameters: Sequence[Mapping[str, Any]], names: Sequence[str]) -> list[Any]:
    """The values of $1, $2, ... (`names` in order) from a request's `parameters`."""
    given: dict[str, Any] = {}
    for parameter in parameters:
        name = parameter.get("name")
        if not isinstance(name, str) or not name:
            raise bad_request("Parameter name must be provided")
        given[name] = parameter_value(parameter)
    missing = [name for name in names if name not in given]
    if missing:
        raise bad_request(f"No value specified for parameter: {missing[0]}")
    return [given[name] for name in names]


def parameter_value(parameter: Mapping[str, Any]) -> Any:
    """One SqlParameter's value, typed as the service sends it."""
    value = parameter.get("value")
    if not isinstance(value, Mapping) or len(value) != 1:
        raise bad_request(f"Parameter {parameter.get('name')} must have exactly one value")
    kind, raw = next(iter(value.items()))
    if kind == "isNull":
        return None
    if kind == "stringValue":
        return _hinted(str(raw), parameter.get("typeHint"))
    if kind == "longValue":
        return Int8(int(raw))
    if kind == "doubleValue":
        return float(raw)
    if kind == "booleanValue":
        return bool(raw)
    if kind == "blobValue":
        return base64.b64decode(raw)
    if kind == "arrayValue":
        raise bad_request("Array parameters are not supported.")
    raise bad_request(f"Unsupported value type {kind}")


def _hinted(raw: str, hint: str | None) -> Any:
    try:
        if hint is None:
            return raw
        if hint == "DECIMAL":
            return Decimal(raw)
        if hint == "TIMESTAMP":
            return datetime.fromisoformat(raw)
        if hint == "DATE":
            return date.fromisoformat(raw)
        if hint == "TIME":
            return time.fromisoformat(raw)
        if hint == "UUID":
            return uuid.UUID(raw)
        if hint == "JSON":
            json.loads(raw)
            return Json(raw, dumps=lambda text: text)
    except (ValueError, InvalidOperation) as exc:
        raise bad_request(f"Cannot convert {raw!r} to {hint}: {exc}") from None
    raise bad_request(f"Unsupported type hint {hint}")


def field(value: Any, type_oid: int, options: Mapping[str, str]) -> dict[str, Any]:
    """The Field union of one result value (`options`: the request's resultSetOptions)."""
    if value is None:
        return {"isNull": True}
    if type_oid == NUMERIC_OID and options.get("decimalReturnType") == "DOUBLE_OR_LONG":
        number = Decimal(value)
        if number == number.to_integral_value() and "." not in value:
            return {"longValue": int(number)}
        return {"doubleValue": float(number)}
    if type_oid == INT8_OID and options.get("longReturnType") == "STRING":
        return {"stringValue": str(value)}
    if isinstance(value, list):
        return {"arrayValue": array_value(value)}
    return scalar_field(value)


def scalar_field(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"booleanValue": value}
    if isinstance(value, int):
        return {"longValue": value}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, bytes | bytearray | memoryview):
        return {"blobValue": base64.b64encode(bytes(value)).decode()}
    return {"stringValue": str(value)}


def array_value(values: list[Any]) -> dict[str, Any]:
    """An ArrayValue: nested lists as arrayValues, else one list of the elements' kind."""
    if any(isinstance(v, list) for v in values):
        return {"arrayValues": [array_value(v) if v is not None else None for v in values]}
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return {"booleanValues": values}
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return {"longValues": values}
    if present and all(isinstance(v, float) for v in present):
        return {"doubleValues": values}
    return {"stringValues": [None if v is None else _text(v) for v in values]}


def _text(value: Any) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\x" + bytes(value).hex()
    return str(value)


def json_value(value: Any, type_name: str) -> Any:
    """A value of `formatRecordsAs: JSON`: numbers, strings, booleans, null and lists; json
    columns as their parsed document."""
    if type_name in ("json", "jsonb") and isinstance(value, str):
        return json.loads(value)
    if isinstance(value, list):
        return [json_value(v, type_name.lstrip("_")) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode()
    return str(value)


def column_metadata(column: psycopg.Column, type_name: str, element_name: str) -> dict[str, Any]:
    """One ColumnMetadata (type_name: pg_type.typname, `_int4` for an array of int4;
    element_name: the array's element type, else type_name)."""
    is_array = type_name.startswith("_") and element_name != type_name
    return {
        "name": column.name,
        "label": column.name,
        "type": JDBC_ARRAY if is_array else JDBC_TYPES.get(type_name, JDBC_OTHER),
        "typeName": type_name,
        "schemaName": "",
        "tableName": "",
        "isAutoIncrement": False,
        "isSigned": type_name in SIGNED,
        "isCurrency": type_name == "money",
        "isCaseSensitive": type_name in CASE_SENSITIVE,
        "nullable": 2,  # columnNullableUnknown: a result column, not a table's
        "precision": max(column.precision or column.internal_size or 0, 0),
        "scale": column.scale or 0,
        "arrayBaseColumnType": JDBC_TYPES.get(element_name, JDBC_OTHER) if is_array else 0,
    }
