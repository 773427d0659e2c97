"""SPEC §4 (raw tables, final tables, type table, typing and `_airbyte_meta`) and the NUL/NaN
bullet of §9, end to end through the real CLI."""

from __future__ import annotations

import json
import time as clock
import uuid
from dataclasses import dataclass
from datetime import date, datetime, time, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg.types.json import set_json_loads
from servers import PgDatabase

from .targetrun import (
    META_COLUMNS,
    RAW_LAYOUT,
    messages,
    raw_rows,
    record,
    run_target,
    schema_message,
)

pytestmark = pytest.mark.integration

SCHEMA = "tap_data"
RAW_SCHEMA = "airbyte_internal"
UTC = timezone.utc


# --------------------------------------------------------------------------- helpers


def admin(pg_db: PgDatabase) -> psycopg.Connection[Any]:
    """An admin connection whose JSONB values keep their numbers exact (Decimal, big ints)."""
    conn = pg_db.admin()
    set_json_loads(lambda text: json.loads(text, parse_float=Decimal), conn)
    return conn


def load(pg_db: PgDatabase, workdir: Path, *items: dict[str, Any] | str) -> None:
    """Run the target into schema tap_data and insist it succeeded."""
    lines = [item if isinstance(item, str) else json_line(item) for item in items]
    run = run_target(pg_db.config(schema=SCHEMA), messages(*lines), workdir)
    assert run.returncode == 0, run.stderr


def columns(conn: psycopg.Connection[Any], schema: str, table: str) -> list[tuple[str, str, str]]:
    """(name, data_type, is_nullable) of a table's columns, in order."""
    return [
        tuple(row)
        for row in conn.execute(
            "SELECT column_name, data_type, is_nullable FROM information_schema.columns"
            " WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
            (schema, table),
        ).fetchall()
    ]


def final_rows(
    conn: psycopg.Connection[Any], table: str, order_by: str = "seq"
) -> list[dict[str, Any]]:
    """Every row of a final table in tap_data as a dict, ordered by a column."""
    with conn.cursor(row_factory=dict_row) as cursor:
        cursor.execute(
            psycopg.sql.SQL("SELECT * FROM {} ORDER BY {}").format(
                psycopg.sql.Identifier(SCHEMA, table), psycopg.sql.Identifier(order_by)
            )
        )
        return cursor.fetchall()


def assert_same(actual: Any, expected: Any, where: str) -> None:
    """Equal, of the same Python type, and both aware or both naive for dates and times."""
    assert type(actual) is type(expected), f"{where}: {actual!r} is not like {expected!r}"
    assert actual == expected, f"{where}: {actual!r} != {expected!r}"
    if isinstance(expected, (datetime, time)):
        assert (actual.tzinfo is None) == (expected.tzinfo is None), (
            f"{where}: {actual!r} and {expected!r} differ in time zone awareness"
        )


def json_line(item: dict[str, Any]) -> str:
    """A message as JSON, Decimal values as JSON numbers written exactly."""
    marker = "@@DECIMAL@@"
    text = json.dumps(
        item, default=lambda v: f"{marker}{v}{marker}" if isinstance(v, Decimal) else str(v)
    )
    return text.replace(f'"{marker}', "").replace(f'{marker}"', "")


@dataclass(frozen=True)
class JsonText:
    """Expect a string holding this JSON value (spacing is not part of the contract)."""

    value: Any


def assert_value(actual: Any, expected: Any, where: str) -> None:
    """`assert_same`, or for `JsonText` a string that parses to the expected JSON value."""
    if isinstance(expected, JsonText):
        assert isinstance(actual, str), f"{where}: {actual!r} is not JSON text"
        assert json.loads(actual, parse_float=Decimal) == expected.value, f"{where}: {actual!r}"
    else:
        assert_same(actual, expected, where)


def nulled(field: str) -> dict[str, str]:
    return {"field": field, "change": "NULLED", "reason": "DESTINATION_TYPECAST_ERROR"}


def truncated(field: str) -> dict[str, str]:
    return {"field": field, "change": "TRUNCATED", "reason": "DESTINATION_SERIALIZATION_ERROR"}


# --------------------------------------------------------------------------- §4.1 raw tables


def test_raw_table_layout(pg_db: PgDatabase, tmp_path: Path) -> None:
    started_ms = int(clock.time() * 1000)
    load(
        pg_db,
        tmp_path,
        schema_message("users", {"id": {"type": "integer"}, "name": {"type": "string"}}, ["id"]),
        record("users", {"id": 1, "name": "a"}, "2024-05-01T10:00:00+02:00"),
        record("users", {"id": 2, "name": "b"}, "2024-05-03T10:00:00Z"),
        record("users", {"id": 3, "name": "c"}),
        {"type": "STATE", "value": {"done": True}},
    )
    finished_ms = int(clock.time() * 1000)
    conn = admin(pg_db)
    table = "tap_data_raw__stream_users"
    assert columns(conn, RAW_SCHEMA, table) == RAW_LAYOUT
    # Primary key on _airbyte_raw_id, plus exactly one other index, partial on untyped rows.
    indexes = conn.execute(
        "SELECT i.indisprimary, i.indisunique,"
        " array(SELECT a.attname::text FROM unnest(i.indkey) AS k"
        "       JOIN pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = k),"
        " pg_get_expr(i.indpred, i.indrelid)"
        " FROM pg_index AS i WHERE i.indrelid = %s::regclass ORDER BY i.indisprimary DESC",
        (f"{RAW_SCHEMA}.{table}",),
    ).fetchall()
    assert len(indexes) == 2, indexes
    assert indexes[0][:3] == (True, True, ["_airbyte_raw_id"])
    assert indexes[0][3] is None
    assert indexes[1][0] is False
    assert indexes[1][3] is not None
    assert indexes[1][3].replace("(", "").replace(")", "") == "_airbyte_loaded_at IS NULL"

    rows = raw_rows(conn, table)
    assert [row[3] for row in rows] == [
        {"id": 1, "name": "a"},
        {"id": 2, "name": "b"},
        {"id": 3, "name": "c"},
    ]
    sync_ids = set()
    for raw_id, _, loaded_at, _, meta, generation in rows:
        assert str(uuid.UUID(raw_id)) == raw_id
        assert loaded_at is not None  # typed in the same run
        assert set(meta) == {"changes", "sync_id"}
        assert meta["changes"] == []
        assert type(meta["sync_id"]) is int
        sync_ids.add(meta["sync_id"])
        assert generation == 0
    (sync_id,) = sync_ids
    # The run's start time in epoch milliseconds.
    assert started_ms - 1000 <= sync_id <= finished_ms
    assert rows[0][1] == datetime(2024, 5, 1, 8, tzinfo=UTC)
    assert rows[1][1] == datetime(2024, 5, 3, 10, tzinfo=UTC)
    # No time_extracted: the time the record was read.
    assert started_ms - 1000 <= rows[2][1].timestamp() * 1000 <= finished_ms
    # The final table's _airbyte_ columns repeat the raw row's.
    final = {row["_airbyte_raw_id"]: row for row in final_rows(conn, "users", "id")}
    for raw_id, extracted_at, _, _, meta, generation in rows:
        assert final[raw_id]["_airbyte_extracted_at"] == extracted_at
        assert final[raw_id]["_airbyte_meta"] == meta
        assert final[raw_id]["_airbyte_generation_id"] == generation


def test_extracted_at_is_each_records_own_time_extracted(pg_db: PgDatabase, tmp_path: Path) -> None:
    """§4.1: `_airbyte_extracted_at` is the record's `time_extracted`, also when a tap sends
    them out of order."""
    times = ["2024-05-03T10:00:00Z", "2024-05-01T10:00:00Z", "2024-05-02T10:00:00Z"]
    load(
        pg_db,
        tmp_path,
        schema_message("events", {"seq": {"type": "integer"}}),
        *[record("events", {"seq": i}, moment) for i, moment in enumerate(times)],
    )
    conn = admin(pg_db)
    rows = raw_rows(conn, "tap_data_raw__stream_events")
    got = {row[3]["seq"]: row[1] for row in rows}
    assert got == {i: datetime.fromisoformat(moment) for i, moment in enumerate(times)}


# --------------------------------------------------------------------------- §4.3 type table

DT = "2024-05-01T10:11:12.345678Z"
DT_AWARE = datetime(2024, 5, 1, 10, 11, 12, 345678, tzinfo=UTC)

#: (property, JSON schema, information_schema data_type, [(value sent, value read back)]).
TYPE_CASES: list[tuple[str, dict[str, Any], str, list[tuple[Any, Any]]]] = [
    (
        "s",
        {"type": "string"},
        "character varying",
        [
            ("hello", "hello"),
            ("", ""),
            ("non-BMP \U0001f600 \U0001d518", "non-BMP \U0001f600 \U0001d518"),
            # A string column takes any scalar as its text, objects and arrays as JSON text.
            (5, "5"),
            (False, "false"),
            ({"k": [1, "x"]}, JsonText({"k": [1, "x"]})),
            ([1, {"y": None}], JsonText([1, {"y": None}])),
        ],
    ),
    (
        "n",
        {"type": "number"},
        "numeric",
        [
            (Decimal("12.5"), Decimal("12.5")),
            (7, Decimal(7)),
            (Decimal("-0.001"), Decimal("-0.001")),
        ],
    ),
    ("i", {"type": "integer"}, "bigint", [(42, 42), (-(2**63), -(2**63)), (2**63 - 1, 2**63 - 1)]),
    ("b", {"type": "boolean"}, "boolean", [(True, True), (False, False)]),
    (
        "o",
        {"type": "object", "properties": {"a": {"type": "integer"}}},
        "jsonb",
        [({"a": 1, "b": [1, 2]}, {"a": 1, "b": [1, 2]}), ({}, {})],
    ),
    (
        "a",
        {"type": "array", "items": {"type": "string"}},
        "jsonb",
        [([1, "x", {"y": None}], [1, "x", {"y": None}]), ([], [])],
    ),
    ("ts", {"type": "string", "format": "date-time"}, "timestamp with time zone", [(DT, DT_AWARE)]),
    (
        "ts_tz",
        {"type": "string", "format": "date-time", "airbyte_type": "timestamp_with_timezone"},
        "timestamp with time zone",
        [(DT, DT_AWARE)],
    ),
    (
        "ts_ntz",
        {"type": "string", "format": "date-time", "airbyte_type": "timestamp_without_timezone"},
        "timestamp without time zone",
        [("2024-05-01T10:11:12.5", datetime(2024, 5, 1, 10, 11, 12, 500000))],
    ),
    (
        "t",
        {"type": "string", "format": "time"},
        "time without time zone",
        [("10:11:12", time(10, 11, 12))],
    ),
    (
        "t_ntz",
        {"type": "string", "format": "time", "airbyte_type": "time_without_timezone"},
        "time without time zone",
        [("23:59:59.25", time(23, 59, 59, 250000))],
    ),
    (
        "t_tz",
        {"type": "string", "format": "time", "airbyte_type": "time_with_timezone"},
        "time with time zone",
        [("10:11:12Z", time(10, 11, 12, tzinfo=UTC))],
    ),
    (
        "d",
        {"type": "string", "format": "date"},
        "date",
        [("2024-02-29", date(2024, 2, 29)), ("0001-01-01", date(1, 1, 1))],
    ),
    # Nullable forms: T, nullable.
    ("null_s", {"type": ["null", "string"]}, "character varying", [(None, None), ("x", "x")]),
    ("null_i", {"type": ["integer", "null"]}, "bigint", [(5, 5), (None, None)]),
    (
        "null_ts",
        {"type": ["null", "string"], "format": "date-time"},
        "timestamp with time zone",
        [(DT, DT_AWARE), (None, None)],
    ),
    ("any_i", {"anyOf": [{"type": "null"}, {"type": "integer"}]}, "bigint", [(9, 9), (None, None)]),
    (
        "any_d",
        {"anyOf": [{"type": "string", "format": "date"}, {"type": "null"}]},
        "date",
        [("2023-12-31", date(2023, 12, 31))],
    ),
    (
        "any_o",
        {"anyOf": [{"type": "null"}, {"type": "object"}]},
        "jsonb",
        [({"k": "v"}, {"k": "v"}), (None, None)],
    ),
    # Several non-null types: the most general wins.
    (
        "u_num_int",
        {"type": ["integer", "number"]},
        "numeric",
        [(3, Decimal(3)), (Decimal("2.5"), Decimal("2.5"))],
    ),
    ("u_int_bool", {"type": ["boolean", "integer", "null"]}, "bigint", [(5, 5)]),
    ("u_num_bool", {"type": ["boolean", "number"]}, "numeric", [(Decimal("1.5"), Decimal("1.5"))]),
    (
        "u_date_num",
        {"type": ["number", "string"], "format": "date"},
        "date",
        [("2024-01-01", date(2024, 1, 1))],
    ),
    (
        "u_str_int",
        {"type": ["integer", "string"]},
        "character varying",
        [
            (7, "7"),
            ("seven", "seven"),
            (True, "true"),
            (Decimal("1.25"), "1.25"),
            ({"o": {"p": 1}}, JsonText({"o": {"p": 1}})),
            ([], JsonText([])),
        ],
    ),
    (
        "any_str_bool",
        {"anyOf": [{"type": "boolean"}, {"type": "string"}, {"type": "null"}]},
        "character varying",
        [(False, "false"), ("t", "t")],
    ),
    (
        "u_str_obj",
        {"type": ["string", "object"]},
        "jsonb",
        [("plain", "plain"), ({"k": [1]}, {"k": [1]}), (3, 3), (True, True)],
    ),
    (
        "u_obj_arr",
        {"type": ["object", "array", "null"]},
        "jsonb",
        [({"x": 1}, {"x": 1}), ([1, 2], [1, 2]), ("str", "str"), (Decimal("2.5"), Decimal("2.5"))],
    ),
    (
        "any_arr_int",
        {"anyOf": [{"type": "array", "items": {}}, {"type": "integer"}]},
        "jsonb",
        [([None], [None]), (12, 12), ({"o": 1}, {"o": 1})],
    ),
    # No type, {}, unknown: JSONB receiving any value.
    (
        "untyped",
        {},
        "jsonb",
        [({"free": True}, {"free": True}), ("text", "text"), (5, 5), ([1], [1])],
    ),
    ("described", {"description": "no type here"}, "jsonb", [(False, False), ("x", "x")]),
    ("unknown", {"type": "money"}, "jsonb", [(Decimal("9.99"), Decimal("9.99")), ("x", "x")]),
]


def test_type_table(pg_db: PgDatabase, tmp_path: Path) -> None:
    properties: dict[str, Any] = {"seq": {"type": "integer"}}
    properties.update({name: spec for name, spec, _, _ in TYPE_CASES})
    count = max(len(values) for _, _, _, values in TYPE_CASES)
    records = []
    for seq in range(count):
        data: dict[str, Any] = {"seq": seq}
        for name, _, _, values in TYPE_CASES:
            if seq < len(values):
                data[name] = values[seq][0]
        records.append(record("types", data))
    lines = [json_line(item) for item in [schema_message("types", properties), *records]]
    load(pg_db, tmp_path, *lines)

    conn = admin(pg_db)
    expected_columns = [("seq", "bigint", "YES")]
    expected_columns += [(name, data_type, "YES") for name, _, data_type, _ in TYPE_CASES]
    expected_columns += [(name, data_type, "-") for name, data_type in META_COLUMNS]
    got_columns = columns(conn, SCHEMA, "types")
    assert [column[:2] for column in got_columns] == [column[:2] for column in expected_columns]
    # Property columns are nullable.
    assert [column[2] for column in got_columns[: 1 + len(TYPE_CASES)]] == ["YES"] * (
        1 + len(TYPE_CASES)
    )

    rows = final_rows(conn, "types")
    assert [row["seq"] for row in rows] == list(range(count))
    for seq, row in enumerate(rows):
        assert row["_airbyte_meta"]["changes"] == [], row["_airbyte_meta"]
        for name, _, _, values in TYPE_CASES:
            expected = values[seq][1] if seq < len(values) else None
            if expected is None:
                assert row[name] is None, f"{name}[{seq}]: {row[name]!r}"
            else:
                assert_value(row[name], expected, f"{name}[{seq}]")
    # The raw table keeps every record as received.
    raw = [row[3] for row in raw_rows(conn, "tap_data_raw__stream_types")]
    assert raw == [item["record"] for item in records]


def test_stream_without_properties(pg_db: PgDatabase, tmp_path: Path) -> None:
    load(
        pg_db,
        tmp_path,
        schema_message("bare", {}),
        record("bare", {"x": 1, "y": "two"}),
        record("bare", {}),
    )
    conn = admin(pg_db)
    assert [column[:2] for column in columns(conn, SCHEMA, "bare")] == META_COLUMNS
    rows = final_rows(conn, "bare", "_airbyte_raw_id")
    raw = raw_rows(conn, "tap_data_raw__stream_bare")
    assert [row["_airbyte_raw_id"] for row in rows] == [row[0] for row in raw]
    assert [row[3] for row in raw] == [{"x": 1, "y": "two"}, {}]
    assert all(row["_airbyte_meta"]["changes"] == [] for row in rows)


# --------------------------------------------------------------------------- §4.4 typing


BAD_PROPERTIES = {
    "seq": {"type": "integer"},
    "d": {"type": "string", "format": "date"},
    "Bad Date": {"type": ["null", "string"], "format": "date"},
    "i": {"type": "integer"},
    "num": {"type": "number"},
    "arr": {"type": "array"},
    "obj": {"type": "object"},
    "ts": {"type": "string", "format": "date-time"},
    "ts_ntz": {
        "type": "string",
        "format": "date-time",
        "airbyte_type": "timestamp_without_timezone",
    },
    "t": {"type": "string", "format": "time"},
    "flag": {"type": "boolean"},
}

#: (property, bad value) — each makes its row's value NULL with one NULLED change.
CAST_FAILURES: list[tuple[str, Any]] = [
    ("d", "2024-02-30"),
    ("d", "not a date"),
    ("Bad Date", "31/12/2024"),
    ("i", 2**63),
    ("i", -(2**63) - 1),
    ("i", Decimal("42.5")),
    ("i", "forty-two"),
    ("i", True),
    ("num", "abc"),
    ("num", {"n": 1}),
    ("arr", {}),
    ("arr", "[1, 2]"),
    ("obj", [1]),
    ("obj", "{}"),
    ("ts", "10000-01-01T00:00:00Z"),
    ("ts", "2024-13-01T00:00:00Z"),
    ("ts", 1714557600),
    ("ts_ntz", "yesterday"),
    ("t", "25:00:00"),
    ("flag", "yes"),
    ("flag", 1),
]

#: (property, value that fits although not of the column's JSON type, value read back).
CAST_SUCCESSES: list[tuple[str, Any, Any]] = [
    ("ts", "2024-05-01T10:11:12.123456789Z", datetime(2024, 5, 1, 10, 11, 12, 123457, tzinfo=UTC)),
    ("ts", "2024-05-01T10:11:12.9999996Z", datetime(2024, 5, 1, 10, 11, 13, tzinfo=UTC)),
    ("ts_ntz", "2024-05-01T10:11:12.000000499", datetime(2024, 5, 1, 10, 11, 12)),
    ("i", Decimal("42.0"), 42),
    ("i", Decimal("1e3"), 1000),
    ("i", "42", 42),
    ("num", "12.5", Decimal("12.5")),
    ("flag", "true", True),
    ("flag", "false", False),
]


def test_cast_failures_null_the_value_and_record_a_change(
    pg_db: PgDatabase, tmp_path: Path
) -> None:
    records = [
        {"seq": seq, prop: value}
        for seq, (prop, value) in enumerate(
            [*CAST_FAILURES, *((p, v) for p, v, _ in CAST_SUCCESSES)]
        )
    ]
    load(
        pg_db,
        tmp_path,
        schema_message("bad", BAD_PROPERTIES),
        *[json_line(record("bad", data)) for data in records],
    )
    conn = admin(pg_db)
    columns_by_prop = {"Bad Date": "Bad_Date"}
    rows = final_rows(conn, "bad")
    raw = {row[3]["seq"]: row for row in raw_rows(conn, "tap_data_raw__stream_bad")}
    assert [row["seq"] for row in rows] == list(range(len(records)))  # every row written
    sync_id = next(iter(raw.values()))[4]["sync_id"]
    assert type(sync_id) is int
    for seq, (prop, value) in enumerate(CAST_FAILURES):
        row = rows[seq]
        column = columns_by_prop.get(prop, prop)
        where = f"{prop}={value!r}"
        assert row[column] is None, f"{where}: {row[column]!r}"
        assert row["_airbyte_meta"] == {"changes": [nulled(prop)], "sync_id": sync_id}, where
        # The raw table keeps the value as received.
        assert_same(raw[seq][3][prop], value, where)
        assert raw[seq][0] == row["_airbyte_raw_id"]
        # Every other column of the row is NULL (the property was absent).
        others = [name for name in BAD_PROPERTIES if name not in ("seq", prop)]
        assert all(row[columns_by_prop.get(n, n)] is None for n in others), where
    for offset, (prop, value, expected) in enumerate(CAST_SUCCESSES):
        row = rows[len(CAST_FAILURES) + offset]
        where = f"{prop}={value!r}"
        assert_same(row[prop], expected, where)
        assert row["_airbyte_meta"] == {"changes": [], "sync_id": sync_id}, where


def test_numbers_are_exact(pg_db: PgDatabase, tmp_path: Path) -> None:
    values = [
        Decimal("12345678901234567890.123"),
        Decimal("0.1"),
        2**64,
        -(2**70) - 1,
        123456789012345678901234567890,
        Decimal("1E-30"),
        Decimal("3.14159265358979323846264338327950288419716939937510"),
    ]
    records = [{"seq": seq, "n": value, "i": value} for seq, value in enumerate(values)]
    load(
        pg_db,
        tmp_path,
        schema_message(
            "nums", {"seq": {"type": "integer"}, "n": {"type": "number"}, "i": {"type": "integer"}}
        ),
        *[json_line(record("nums", data)) for data in records],
    )
    conn = admin(pg_db)
    rows = final_rows(conn, "nums")
    raw = {row[3]["seq"]: row[3] for row in raw_rows(conn, "tap_data_raw__stream_nums")}
    texts = dict(
        conn.execute(
            "SELECT (_airbyte_data->>'seq')::int, _airbyte_data->>'i'"
            " FROM airbyte_internal.tap_data_raw__stream_nums"
        ).fetchall()
    )
    for seq, value in enumerate(values):
        row = rows[seq]
        assert_same(row["n"], Decimal(value), f"n={value}")
        assert_same(raw[seq]["n"], value, f"raw n={value}")
        assert Decimal(texts[seq]) == Decimal(value), f"raw text {texts[seq]} != {value}"
        if type(value) is int:
            # Beyond 64 bits: NULL in the integer column, with a change; exact in the raw table.
            assert row["i"] is None
            assert row["_airbyte_meta"]["changes"] == [nulled("i")]
            assert_same(raw[seq]["i"], value, f"raw i={value}")
            assert texts[seq] == str(value)
        else:
            assert row["i"] is None  # not integral (12345678901234567890.123 is also too big)
            assert row["_airbyte_meta"]["changes"] == [nulled("i")]


# --------------------------------------------------------------------------- §9 NUL characters


def test_nul_characters_are_removed_and_recorded(pg_db: PgDatabase, tmp_path: Path) -> None:
    properties = {
        "seq": {"type": "integer"},
        "s": {"type": "string"},
        "o": {"type": "object"},
        "a": {"type": "array"},
        "j": {},
    }
    sent = [
        {"seq": 0, "s": "a\u0000b"},
        {"seq": 1, "o": {"x": {"deep": "c\u0000d"}}},
        {"seq": 2, "a": ["e\u0000f", ["\u0000"]]},
        {"seq": 3, "o": {"ke\u0000y": 1}},
        {"seq": 4, "s": "\u0000\u0000", "j": {"list": [{"k\u0000": "v\u0000"}]}},
        {"seq": 5, "s": "clean", "o": {"k": "v"}},
    ]
    cleaned = [
        ({"seq": 0, "s": "ab"}, ["s"]),
        ({"seq": 1, "o": {"x": {"deep": "cd"}}}, ["o"]),
        ({"seq": 2, "a": ["ef", [""]]}, ["a"]),
        ({"seq": 3, "o": {"key": 1}}, ["o"]),
        ({"seq": 4, "s": "", "j": {"list": [{"k": "v"}]}}, ["s", "j"]),
        ({"seq": 5, "s": "clean", "o": {"k": "v"}}, []),
    ]
    load(
        pg_db,
        tmp_path,
        schema_message("nul", properties),
        *[record("nul", data) for data in sent],
    )
    conn = admin(pg_db)
    raw = sorted(raw_rows(conn, "tap_data_raw__stream_nul"), key=lambda row: row[3]["seq"])
    rows = final_rows(conn, "nul")
    assert len(raw) == len(rows) == len(sent)
    for (data, fields), raw_row, row in zip(cleaned, raw, rows, strict=True):
        changes = [truncated(field) for field in fields]
        assert raw_row[3] == data
        assert raw_row[4]["changes"] == changes
        assert row["_airbyte_meta"]["changes"] == changes
        for name in properties:
            assert row[name] == data.get(name), f"{name} of {data}"


def test_nan_and_infinity_are_kept_as_strings_and_recorded(
    pg_db: PgDatabase, tmp_path: Path
) -> None:
    """§9: NaN/Infinity become the strings "NaN", "Infinity", "-Infinity" in the raw table,
    recorded as TRUNCATED; §4.4: a DECIMAL column on PostgreSQL 14+ holds them, BIGINT not."""
    properties = {
        "seq": {"type": "integer"},
        "n": {"type": "number"},
        "i": {"type": "integer"},
        "s": {"type": "string"},
        "o": {"type": "object"},
    }
    lines = [
        json_line(schema_message("nonfinite", properties)),
        '{"type": "RECORD", "stream": "nonfinite", "record": {"seq": 0, "n": NaN}}',
        '{"type": "RECORD", "stream": "nonfinite", "record": {"seq": 1, "n": Infinity,'
        ' "s": -Infinity}}',
        '{"type": "RECORD", "stream": "nonfinite", "record": {"seq": 2, "n": -Infinity,'
        ' "i": NaN, "o": {"deep": [NaN]}}}',
    ]
    load(pg_db, tmp_path, *lines)
    conn = admin(pg_db)
    raw = sorted(raw_rows(conn, "tap_data_raw__stream_nonfinite"), key=lambda r: r[3]["seq"])
    assert [row[3] for row in raw] == [
        {"seq": 0, "n": "NaN"},
        {"seq": 1, "n": "Infinity", "s": "-Infinity"},
        {"seq": 2, "n": "-Infinity", "i": "NaN", "o": {"deep": ["NaN"]}},
    ]
    assert [row[4]["changes"] for row in raw] == [
        [truncated("n")],
        [truncated("n"), truncated("s")],
        [truncated("n"), truncated("i"), truncated("o")],
    ]
    rows = final_rows(conn, "nonfinite")
    assert rows[0]["n"].is_nan()
    assert rows[1]["n"] == Decimal("Infinity")
    assert rows[2]["n"] == Decimal("-Infinity")
    assert rows[1]["s"] == "-Infinity"
    assert rows[2]["i"] is None
    assert rows[2]["o"] == {"deep": ["NaN"]}
    key = json.dumps
    assert sorted(map(key, rows[0]["_airbyte_meta"]["changes"])) == [key(truncated("n"))]
    assert sorted(map(key, rows[1]["_airbyte_meta"]["changes"])) == sorted(
        map(key, [truncated("n"), truncated("s")])
    )
    assert sorted(map(key, rows[2]["_airbyte_meta"]["changes"])) == sorted(
        map(key, [truncated("n"), truncated("i"), truncated("o"), nulled("i")])
    )


# --------------------------------------------------------------------------- timestamps


def test_timestamp_offsets(pg_db: PgDatabase, tmp_path: Path) -> None:
    cases = [
        ("2024-05-01T10:00:00Z", datetime(2024, 5, 1, 10, tzinfo=UTC)),
        ("2024-05-01T10:00:00+05:30", datetime(2024, 5, 1, 4, 30, tzinfo=UTC)),
        ("2024-05-01T10:00:00-0800", datetime(2024, 5, 1, 18, tzinfo=UTC)),
        ("2024-05-01T10:00:00+05", datetime(2024, 5, 1, 5, tzinfo=UTC)),
        ("2024-05-01T10:00:00", datetime(2024, 5, 1, 10, tzinfo=UTC)),
        ("2024-05-01T10:00:00.5+00:00", datetime(2024, 5, 1, 10, 0, 0, 500000, tzinfo=UTC)),
        ("2024-01-01T01:00:00+02:00", datetime(2023, 12, 31, 23, tzinfo=UTC)),
    ]
    time_cases = [
        ("10:00:00Z", time(10, tzinfo=UTC), time(10)),
        ("10:00:00+05:30", time(4, 30, tzinfo=UTC), time(10)),
        ("10:00:00-0800", time(18, tzinfo=UTC), time(10)),
        ("10:00:00+05", time(5, tzinfo=UTC), time(10)),
        ("10:00:00", time(10, tzinfo=UTC), time(10)),
    ]
    properties = {
        "seq": {"type": "integer"},
        "tz": {"type": "string", "format": "date-time"},
        "ntz": {
            "type": "string",
            "format": "date-time",
            "airbyte_type": "timestamp_without_timezone",
        },
        "ttz": {"type": "string", "format": "time", "airbyte_type": "time_with_timezone"},
        "tntz": {"type": "string", "format": "time"},
    }
    records = []
    for seq, (text, _) in enumerate(cases):
        data: dict[str, Any] = {"seq": seq, "tz": text, "ntz": text}
        if seq < len(time_cases):
            data["ttz"] = data["tntz"] = time_cases[seq][0]
        records.append(record("times", data))
    load(pg_db, tmp_path, schema_message("times", properties), *records)
    conn = admin(pg_db)
    rows = final_rows(conn, "times")
    assert len(rows) == len(cases)
    for seq, (text, expected) in enumerate(cases):
        row = rows[seq]
        assert row["_airbyte_meta"]["changes"] == [], text
        assert_same(row["tz"], expected, f"timestamptz {text}")
        # TIMESTAMP drops the offset: the wall-clock time as written.
        wall = datetime.fromisoformat(text).replace(tzinfo=None)
        assert_same(row["ntz"], wall, f"timestamp {text}")
    for seq, (text, aware, naive) in enumerate(time_cases):
        row = rows[seq]
        got = row["ttz"]
        assert isinstance(got, time), f"timetz {text}: {got!r}"
        assert got.tzinfo is not None, f"timetz {text}: {got!r}"
        # Same instant of the day (aware times compare in UTC).
        assert got == aware, f"timetz {text}: {got!r}"
        assert_same(row["tntz"], naive, f"time {text}")


# --------------------------------------------------------------------------- dedup and evolution


def test_dedup_keeps_the_latest_record_per_key(pg_db: PgDatabase, tmp_path: Path) -> None:
    properties = {"id": {"type": "integer"}, "name": {"type": "string"}, "v": {"type": "integer"}}
    load(
        pg_db,
        tmp_path / "1",
        schema_message("accounts", properties, ["id"]),
        record("accounts", {"id": 1, "name": "one", "v": 1}, "2024-05-01T10:00:00Z"),
        record("accounts", {"id": 2, "name": "two", "v": 1}, "2024-05-01T10:00:01Z"),
        record("accounts", {"id": 1, "name": "ONE", "v": 2}, "2024-05-01T10:00:02Z"),
        record("accounts", {"id": 3, "name": "three", "v": 1}, "2024-05-01T10:00:03Z"),
        record("accounts", {"id": 1, "name": "One!", "v": 3}, "2024-05-01T10:00:04Z"),
    )
    conn = admin(pg_db)
    first = final_rows(conn, "accounts", "id")
    assert [(row["id"], row["name"], row["v"]) for row in first] == [
        (1, "One!", 3),
        (2, "two", 1),
        (3, "three", 1),
    ]
    # Unique index on the key column; NULL key components compare equal (SPEC §6.3).
    indexes = conn.execute(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = %s AND tablename = 'accounts'",
        (SCHEMA,),
    ).fetchall()
    assert any(
        definition.startswith("CREATE UNIQUE INDEX")
        and definition.endswith("(id) NULLS NOT DISTINCT")
        for (definition,) in indexes
    ), indexes
    load(
        pg_db,
        tmp_path / "2",
        schema_message("accounts", properties, ["id"]),
        record("accounts", {"id": 2, "name": "TWO", "v": 2}, "2024-05-02T10:00:00Z"),
        record("accounts", {"id": 4, "name": "four", "v": 1}, "2024-05-02T10:00:01Z"),
        record("accounts", {"id": 2, "name": "Two!", "v": 3}, "2024-05-02T10:00:02Z"),
        record("accounts", {"id": 1, "name": "uno", "v": 4}, "2024-05-02T10:00:03Z"),
    )
    rows = final_rows(conn, "accounts", "id")
    assert [(row["id"], row["name"], row["v"]) for row in rows] == [
        (1, "uno", 4),
        (2, "Two!", 3),
        (3, "three", 1),
        (4, "four", 1),
    ]
    # Each final row is the typed copy of its raw row (same id, same extraction time).
    raw = {row[0]: row for row in raw_rows(conn, "tap_data_raw__stream_accounts")}
    assert len(raw) == 9
    for row in rows:
        raw_row = raw[row["_airbyte_raw_id"]]
        assert raw_row[3] == {"id": row["id"], "name": row["name"], "v": row["v"]}
        assert raw_row[1] == row["_airbyte_extracted_at"]
    # The unchanged row 3 is still the one of the first run.
    assert rows[2]["_airbyte_raw_id"] == first[2]["_airbyte_raw_id"]


def test_dedup_winner_is_the_latest_extraction_not_the_latest_arrival(
    pg_db: PgDatabase, tmp_path: Path
) -> None:
    """§4.1 + §6.3: without a cursor the winner is the latest `_airbyte_extracted_at`, then the
    latest arrival; an older record arriving later in the same run does not win."""
    properties = {"id": {"type": "integer"}, "v": {"type": "string"}}
    load(
        pg_db,
        tmp_path,
        schema_message("latest", properties, ["id"]),
        record("latest", {"id": 1, "v": "newer"}, "2024-05-02T00:00:00Z"),
        record("latest", {"id": 1, "v": "older"}, "2024-05-01T00:00:00Z"),
        record("latest", {"id": 2, "v": "first"}, "2024-05-03T00:00:00Z"),
        record("latest", {"id": 2, "v": "second"}, "2024-05-03T00:00:00Z"),
    )
    rows = final_rows(admin(pg_db), "latest", "id")
    assert [(row["id"], row["v"], row["_airbyte_extracted_at"]) for row in rows] == [
        (1, "newer", datetime(2024, 5, 2, tzinfo=UTC)),
        (2, "second", datetime(2024, 5, 3, tzinfo=UTC)),
    ]


def test_new_property_adds_a_nullable_column_at_the_end(pg_db: PgDatabase, tmp_path: Path) -> None:
    before = {"id": {"type": "integer"}, "name": {"type": "string"}}
    load(
        pg_db,
        tmp_path / "1",
        schema_message("people", before),
        record("people", {"id": 1, "name": "a"}),
        record("people", {"id": 2, "name": "b"}),
    )
    conn = admin(pg_db)
    old_columns = columns(conn, SCHEMA, "people")
    assert [column[0] for column in old_columns] == ["id", "name", *(n for n, _ in META_COLUMNS)]
    after = {
        "id": {"type": "integer"},
        "email": {"type": ["null", "string"]},
        "name": {"type": "string"},
        "score": {"type": "number"},
    }
    load(
        pg_db,
        tmp_path / "2",
        schema_message("people", after),
        record("people", {"id": 3, "name": "c", "email": "c@x", "score": Decimal("1.5")}),
    )
    new_columns = columns(conn, SCHEMA, "people")
    assert new_columns[: len(old_columns)] == old_columns  # nothing reordered or retyped
    added = new_columns[len(old_columns) :]
    assert added == [("email", "character varying", "YES"), ("score", "numeric", "YES")]
    rows = final_rows(conn, "people", "id")
    assert [(r["id"], r["name"], r["email"], r["score"]) for r in rows] == [
        (1, "a", None, None),
        (2, "b", None, None),
        (3, "c", "c@x", Decimal("1.5")),
    ]
    comments = dict(
        conn.execute(
            "SELECT attname, col_description(attrelid, attnum) FROM pg_attribute"
            " WHERE attrelid = 'tap_data.people'::regclass AND attnum > 0"
            " AND attname IN ('email', 'score')"
        ).fetchall()
    )
    assert {name: json.loads(text) for name, text in comments.items()} == {
        "email": {"property": "email"},
        "score": {"property": "score"},
    }


def test_records_before_and_after_a_schema_change(pg_db: PgDatabase, tmp_path: Path) -> None:
    """A new property in a second SCHEMA message of the same run also adds its column."""
    load(
        pg_db,
        tmp_path,
        schema_message("items", {"id": {"type": "integer"}}),
        record("items", {"id": 1}),
        schema_message("items", {"id": {"type": "integer"}, "tag": {"type": "string"}}),
        record("items", {"id": 2, "tag": "new"}),
    )
    conn = admin(pg_db)
    assert [column[0] for column in columns(conn, SCHEMA, "items")][-1] == "tag"
    rows = final_rows(conn, "items", "id")
    assert [(row["id"], row["tag"]) for row in rows] == [(1, None), (2, "new")]
