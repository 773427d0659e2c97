"""SPEC §9 bad input, both halves of every case: the run stops with exit code ≠ 0 and exactly one
ERROR line naming the input line and the problem, AND nothing before the bad line is lost (every
valid record before it committed, the last STATE before it emitted, a re-run from that state
completing the load). Then the inputs that look odd but must load (exit 0), checked value by
value in the raw and the final tables: NUL characters at any depth, a ~20 MB record, nesting 200
deep, non-BMP Unicode, integers beyond 64 bits, NaN/Infinity, an empty stream, a stream without
properties."""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql
from servers import PgDatabase

from .targetrun import (
    META_COLUMNS,
    RAW_LAYOUT,
    Run,
    messages,
    raw_rows,
    record,
    run_target,
    schema_message,
)

pytestmark = pytest.mark.integration

SCHEMA = "tap_data"
USERS = schema_message("users", {"id": {"type": "integer"}, "name": {"type": "string"}}, ["id"])
EVENTS = schema_message("events", {"seq": {"type": "integer"}, "what": {"type": "string"}})
AT = "2024-03-01T12:00:00+00:00"
TRUNCATED = {"change": "TRUNCATED", "reason": "DESTINATION_SERIALIZATION_ERROR"}
NULLED = {"change": "NULLED", "reason": "DESTINATION_TYPECAST_ERROR"}
#: Outside the Basic Multilingual Plane, and a letter (so it stays in identifiers, SPEC §5).
X = "\N{MATHEMATICAL DOUBLE-STRUCK CAPITAL X}"
Y = "\N{MATHEMATICAL DOUBLE-STRUCK CAPITAL Y}"


def user(number: int) -> dict[str, Any]:
    return record("users", {"id": number, "name": f"user {number}"}, AT)


def state(pos: int) -> dict[str, Any]:
    return {"type": "STATE", "value": {"pos": pos}}


def final_rows(db: PgDatabase, table: str, columns: str) -> list[tuple[Any, ...]]:
    return db.admin().execute(f"SELECT {columns} FROM tap_data.{table} ORDER BY 1").fetchall()  # noqa: S608


def raw_table(stream: str) -> str:
    return f"tap_data_raw__stream_{stream}"


def raw_data(db: PgDatabase, stream: str) -> list[Any]:
    return [row[3] for row in raw_rows(db.admin(), raw_table(stream))]


def columns_of(db: PgDatabase, schema: str, table: str) -> list[tuple[Any, ...]]:
    return (
        db.admin()
        .execute(
            "SELECT column_name, data_type, is_nullable FROM information_schema.columns"
            " WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
            (schema, table),
        )
        .fetchall()
    )


# --------------------------------------------------------------------------- bad input

#: Line 8 of the input is the bad line (see `bad_input`).
BAD_LINE = 8


def key_refusal(value: str) -> str:
    """The error for a users record whose integer key `value` cannot be stored (SPEC §6.3)."""
    return (
        f"Input line 8: record of stream users has key property id = {value}, which its key"
        " column cannot hold exactly (a key is never NULLed by typing, or distinct keys would"
        " merge); fix the value at the source, or change the key column's type."
    )


#: case id → (the bad line, the one ERROR line the user must see; "..." = any text there).
CASES: dict[str, tuple[str, str]] = {
    "malformed JSON": (
        '{"type": "RECORD", "stream": "users", "rec',
        "Input line 8: not valid JSON (Input data was truncated).",
    ),
    "not JSON at all": ("hello, target", "Input line 8: not valid JSON (...)."),
    "JSON but not an object": ("[1, 2, 3]", "Input line 8: not a JSON object."),
    "RECORD before its SCHEMA": (
        json.dumps({"type": "RECORD", "stream": "orders", "record": {"id": 1}}),
        "Input line 8: RECORD for stream orders arrived before that stream's SCHEMA message.",
    ),
    "unknown message type": (
        json.dumps({"type": "RECORDS", "stream": "users", "record": {"id": 9}}),
        "Input line 8: unknown message type 'RECORDS'; expected SCHEMA, RECORD, STATE,"
        " ACTIVATE_VERSION or BATCH.",
    ),
    "message without a type": (
        json.dumps({"stream": "users", "record": {"id": 9}}),
        "Input line 8: message without a type.",
    ),
    "SCHEMA without properties": (
        json.dumps({"type": "SCHEMA", "stream": "orders", "schema": {"type": "object"}}),
        "Input line 8: SCHEMA message for stream orders has no properties key"
        ' (send "properties": {} for a stream without properties).',
    ),
    "SCHEMA without stream": (
        json.dumps({"type": "SCHEMA", "schema": {"properties": {"id": {"type": "integer"}}}}),
        "Input line 8: SCHEMA message without a stream name.",
    ),
    "record missing a key property": (
        json.dumps({"type": "RECORD", "stream": "users", "record": {"name": "no id"}}),
        "Input line 8: record of stream users has no value for key property id.",
    ),
    "RECORD that is a list": (
        json.dumps({"type": "RECORD", "stream": "users", "record": [1, "x"]}),
        "Input line 8: RECORD message for stream users has no record object.",
    ),
    "RECORD that is a string": (
        json.dumps({"type": "RECORD", "stream": "users", "record": "id=1"}),
        "Input line 8: RECORD message for stream users has no record object.",
    ),
    "RECORD without record": (
        json.dumps({"type": "RECORD", "stream": "users"}),
        "Input line 8: RECORD message for stream users has no record object.",
    ),
    "integer key beyond BIGINT": (
        '{"type": "RECORD", "stream": "users", "record": {"id": 1e20, "name": "big"}}',
        key_refusal("1e+20"),
    ),
    "integer key that is not a number": (
        json.dumps({"type": "RECORD", "stream": "users", "record": {"id": "abc", "name": "s"}}),
        key_refusal('"abc"'),
    ),
    "integer key with a fraction, slow way": (
        '{"type": "RECORD", "stream": "users", "record": {"id": 1.5, "name": "NaN\\u0000"}}',
        key_refusal("1.5"),
    ),
    "key_properties not strings": (
        json.dumps(
            {
                "type": "SCHEMA",
                "stream": "orders",
                "schema": {"properties": {"id": {"type": "integer"}}},
                "key_properties": [1],
            }
        ),
        "Input line 8: SCHEMA message for stream orders has key_properties [1]; it must be a"
        " list of property names (strings).",
    ),
    "key_properties not a list": (
        json.dumps(
            {
                "type": "SCHEMA",
                "stream": "orders",
                "schema": {"properties": {"id": {"type": "integer"}}},
                "key_properties": "id",
            }
        ),
        'Input line 8: SCHEMA message for stream orders has key_properties "id"; it must be a'
        " list of property names (strings).",
    ),
    "bookmark_properties not strings": (
        json.dumps(
            {
                "type": "SCHEMA",
                "stream": "orders",
                "schema": {"properties": {"id": {"type": "integer"}}},
                "bookmark_properties": [{"a": 1}],
            }
        ),
        'Input line 8: SCHEMA message for stream orders has bookmark_properties [{"a": 1}]; it'
        " must be a list of property names (strings).",
    ),
    "STATE without value": (
        json.dumps({"type": "STATE", "bookmarks": {}}),
        "Input line 8: STATE message without a value.",
    ),
}


def bad_input(bad_line: str) -> str:
    """Valid lines 1-7 (records of two streams, a STATE), the bad line 8, then more records and
    a STATE that must never be loaded or emitted."""
    return messages(
        USERS,  # 1
        EVENTS,  # 2
        user(1),  # 3
        record("events", {"seq": 1, "what": "opened"}, AT),  # 4
        user(2),  # 5: with batch_size_rows 2 the users batch commits here
        state(3),  # 6: covers lines 3-5; emitted once events' record is committed too
        user(3),  # 7: after the state, before the bad line: committed as well
        bad_line,  # 8
        user(4),  # 9: never read
        state(4),  # 10
    )


def matches(line: str, pattern: str) -> bool:
    """`pattern` with "..." standing for any text."""
    head, sep, tail = pattern.partition("...")
    if not sep:
        return line == pattern
    return line.startswith(head) and line.endswith(tail) and len(line) > len(head) + len(tail)


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_stops_clearly_and_keeps_everything_before_it(
    case: str, pg_db: PgDatabase, tmp_path: Path
) -> None:
    bad_line, expected_error = CASES[case]
    config = pg_db.config(schema=SCHEMA, batch_size_rows=2)
    run = run_target(config, bad_input(bad_line), tmp_path / "bad")

    # The clear error: exit ≠ 0, one ERROR line naming line 8 and the problem, no traceback.
    assert run.returncode != 0, run.stderr
    errors = run.error_lines()
    assert len(errors) == 1, run.stderr
    assert matches(errors[0], expected_error), errors[0]
    assert "Traceback" not in run.stderr

    # Nothing lost: every valid record before line 8 committed (raw and final), the last STATE
    # before it emitted, nothing after it read.
    assert run.stdout.splitlines() == ['{"pos": 3}'], run.stdout
    assert final_rows(pg_db, "users", "id, name") == [(n, f"user {n}") for n in (1, 2, 3)]
    assert final_rows(pg_db, "events", "seq, what") == [(1, "opened")]
    assert [data["id"] for data in raw_data(pg_db, "users")] == [1, 2, 3]
    assert raw_data(pg_db, "events") == [{"seq": 1, "what": "opened"}]
    tables = pg_db.admin().execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'tap_data'"
        " ORDER BY 1"
    )
    assert tables.fetchall() == [("events",), ("users",)]

    # The re-run from that state, with the line fixed (dropped), resumes exactly there.
    resumed = run_target(
        config, messages(USERS, EVENTS, user(3), user(4), state(4)), tmp_path / "rerun"
    )
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.splitlines() == ['{"pos": 4}']
    assert final_rows(pg_db, "users", "id, name") == [(n, f"user {n}") for n in (1, 2, 3, 4)]
    # Record 3 was committed after the state the re-run starts from: delivered twice in raw.
    assert sorted(data["id"] for data in raw_data(pg_db, "users")) == [1, 2, 3, 3, 4]


# --------------------------------------------------------------------------- inputs that load


def load(db: PgDatabase, workdir: Path, stdin: str) -> Run:
    run = run_target(db.config(schema=SCHEMA), stdin, workdir, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.error_lines() == []
    assert run.stdout.splitlines() == ['{"pos": 1}'], run.stdout
    return run


def changes(meta: dict[str, Any]) -> list[dict[str, str]]:
    return sorted(meta["changes"], key=lambda change: (change["field"], change["change"]))


def test_nul_characters_at_any_depth_are_removed_and_recorded(
    pg_db: PgDatabase, tmp_path: Path
) -> None:
    properties = {
        "id": {"type": "integer"},
        "top": {"type": "string"},
        "obj": {"type": "object"},
        "arr": {"type": "array"},
        "keyed": {"type": "object"},
        "clean": {"type": "string"},
    }
    dirty = {
        "id": 1,
        "top": "a\u0000b\u0000",
        "obj": {"inner": "x\u0000y", "deep": {"k": ["\u0000", "ok"], "n": 1}},
        "arr": ["p\u0000q", {"z": "\u0000z"}, 5],
        "keyed": {"ke\u0000y": 1, "nested": {"\u0000": "v"}},
        "clean": "no nul",
    }
    clean = {
        "id": 2,
        "top": "plain",
        "obj": {"a": 1},
        "arr": [],
        "keyed": {},
        "clean": "x",
    }
    stdin = messages(
        schema_message("nuls", properties, ["id"]),
        record("nuls", dirty, AT),
        record("nuls", clean, AT),
        state(1),
    )
    assert "\\u0000" in stdin  # sent the way taps send it: escaped in the JSON text
    load(pg_db, tmp_path, stdin)
    cleaned = {
        "id": 1,
        "top": "ab",
        "obj": {"inner": "xy", "deep": {"k": ["", "ok"], "n": 1}},
        "arr": ["pq", {"z": "z"}, 5],
        "keyed": {"key": 1, "nested": {"": "v"}},
        "clean": "no nul",
    }
    recorded = [{"field": name, **TRUNCATED} for name in ("arr", "keyed", "obj", "top")]

    raw = raw_rows(pg_db.admin(), raw_table("nuls"))
    assert [row[3] for row in raw] == [cleaned, clean]
    assert changes(raw[0][4]) == recorded
    assert changes(raw[1][4]) == []

    final = final_rows(pg_db, "nuls", "id, top, obj, arr, keyed, clean, _airbyte_meta")
    assert final[0][:6] == tuple(cleaned.values())
    assert changes(final[0][6]) == recorded
    assert final[1][:6] == tuple(clean.values())
    assert changes(final[1][6]) == []


def test_a_20_mb_record_round_trips(pg_db: PgDatabase, tmp_path: Path) -> None:
    chunk = "0123456789" * 100 + f'é{X} "quoted" \\ back\tslash\n'
    blob = chunk * (20 * 1024 * 1024 // len(chunk.encode()))
    size = len(blob.encode())
    assert 19 * 1024 * 1024 < size <= 20 * 1024 * 1024
    properties = {"id": {"type": "integer"}, "blob": {"type": "string"}}
    stdin = messages(
        schema_message("big", properties, ["id"]),
        record("big", {"id": 1, "blob": blob}, AT),
        record("big", {"id": 2, "blob": "small"}, AT),
        state(1),
    )
    load(pg_db, tmp_path, stdin)
    digest = hashlib.md5(blob.encode()).hexdigest()  # noqa: S324 - a checksum, not security
    admin = pg_db.admin()
    raw = admin.execute(
        "SELECT (_airbyte_data->>'id')::int, md5(_airbyte_data->>'blob'),"
        " length(_airbyte_data->>'blob'), octet_length(_airbyte_data->>'blob'),"
        " _airbyte_meta->'changes'"
        " FROM airbyte_internal.tap_data_raw__stream_big ORDER BY 1"
    ).fetchall()
    assert raw == [
        (1, digest, len(blob), size, []),
        (2, hashlib.md5(b"small").hexdigest(), 5, 5, []),  # noqa: S324
    ]
    final = admin.execute(
        "SELECT id, md5(blob), length(blob), _airbyte_meta->'changes' FROM tap_data.big ORDER BY id"
    ).fetchall()
    assert final == [(1, digest, len(blob), []), (2, hashlib.md5(b"small").hexdigest(), 5, [])]  # noqa: S324


def test_nesting_200_deep_loads(pg_db: PgDatabase, tmp_path: Path) -> None:
    deep: Any = {"leaf": "bottom"}
    deep_list: Any = ["bottom"]
    for level in range(199):
        deep = {f"d{level}": deep}
        deep_list = [deep_list]
    properties = {
        "id": {"type": "integer"},
        "deep": {"type": "object"},
        "deep_list": {"type": "array"},
        "as_text": {"type": "string"},
    }
    data = {"id": 1, "deep": deep, "deep_list": deep_list, "as_text": deep}
    stdin = messages(schema_message("nested", properties, ["id"]), record("nested", data, AT))
    load(pg_db, tmp_path, stdin + messages(state(1)))
    admin = pg_db.admin()
    raw = raw_rows(admin, raw_table("nested"))
    assert [row[3] for row in raw] == [data]
    assert raw[0][4]["changes"] == []
    depth = admin.execute(
        sql.SQL("SELECT jsonb_path_query_first(_airbyte_data, %s) FROM {}").format(
            sql.Identifier("airbyte_internal", raw_table("nested"))
        ),
        ("$.deep" + "".join(f'."d{level}"' for level in reversed(range(199))) + ".leaf",),
    ).fetchone()
    assert depth == ("bottom",)  # reached through 200 levels of objects
    final = final_rows(pg_db, "nested", "id, deep, deep_list, as_text, _airbyte_meta")
    assert final[0][:3] == (1, deep, deep_list)
    assert json.loads(final[0][3]) == deep  # a string column takes an object as its JSON text
    assert final[0][4]["changes"] == []


def test_non_bmp_unicode_in_values_and_property_names(pg_db: PgDatabase, tmp_path: Path) -> None:
    properties = {
        "id": {"type": "integer"},
        X: {"type": "string"},
        "note😀": {"type": "string"},
        "obj": {"type": "object"},
    }
    first = {
        "id": 1,
        X: f"{X} marks the spot 😀🎉",
        "note😀": "🏳️‍🌈 zwj sequence, 𝄞 clef",
        "obj": {"🔑": "𝄞", "list": ["😀", X + Y]},
    }
    second = {"id": 2, X: "raw utf-8 𐍈", "note😀": "", "obj": {X: 2}}
    escaped = json.dumps(record("uni", first, AT))  # surrogate pairs: "\\ud835\\udd4f"
    assert "\\ud835\\udd4f" in escaped
    raw_utf8 = json.dumps(record("uni", second, AT), ensure_ascii=False)
    stdin = messages(schema_message("uni", properties, ["id"]), escaped, raw_utf8, state(1))
    load(pg_db, tmp_path, stdin)
    raw = raw_rows(pg_db.admin(), raw_table("uni"))
    assert [row[3] for row in raw] == [first, second]
    assert [row[4]["changes"] for row in raw] == [[], []]
    # Letters (the double-struck X included) stay in column names; other characters (😀)
    # become "_" (SPEC §5).
    assert [name for name, _, _ in columns_of(pg_db, "tap_data", "uni")] == [
        "id",
        X,
        "note_",
        "obj",
        *(name for name, _ in META_COLUMNS),
    ]
    final = final_rows(pg_db, "uni", f'id, "{X}", note_, obj, _airbyte_meta')
    assert [row[:4] for row in final] == [tuple(first.values()), tuple(second.values())]
    assert [row[4]["changes"] for row in final] == [[], []]


def test_integers_beyond_64_bits(pg_db: PgDatabase, tmp_path: Path) -> None:
    properties = {
        "id": {"type": "integer"},
        "num": {"type": "number"},
        "big_int": {"type": "integer"},
        "max_int": {"type": "integer"},
        "neg": {"type": "number"},
        "exact": {"type": "number"},
    }
    # Written by hand: the numbers must reach the target exactly as these digits.
    lines = [
        json.dumps(schema_message("wide", properties, ["id"])),
        '{"type": "RECORD", "stream": "wide", "time_extracted": "' + AT + '", "record":'
        ' {"id": 1, "num": 123456789012345678901234567890, "big_int": 18446744073709551617,'
        ' "max_int": 9223372036854775807, "neg": -1180591620717411303424,'
        ' "exact": 12345678901234567890.123456789012345678901}}',
        '{"type": "RECORD", "stream": "wide", "time_extracted": "' + AT + '", "record":'
        ' {"id": 2, "num": -98765432109876543210987654321098765432109876543210,'
        ' "big_int": 9223372036854775808, "max_int": -9223372036854775808,'
        ' "neg": 0, "exact": 1e-30}}',
        json.dumps(state(1)),
    ]
    load(pg_db, tmp_path, messages(*lines))
    admin = pg_db.admin()
    # Raw: the JSON keeps every digit.
    raw = admin.execute(
        "SELECT _airbyte_data->>'num', _airbyte_data->>'big_int', _airbyte_data->>'max_int',"
        " _airbyte_data->>'neg', _airbyte_data->>'exact'"
        " FROM airbyte_internal.tap_data_raw__stream_wide ORDER BY _airbyte_raw_id"
    ).fetchall()
    assert raw == [
        (
            "123456789012345678901234567890",
            "18446744073709551617",
            "9223372036854775807",
            "-1180591620717411303424",
            "12345678901234567890.123456789012345678901",
        ),
        (
            "-98765432109876543210987654321098765432109876543210",
            "9223372036854775808",
            "-9223372036854775808",
            "0",
            "0." + "0" * 29 + "1",  # 1e-30, exactly (JSONB writes numbers without exponent)
        ),
    ]
    # Final: a number column holds them exactly; an integer column (BIGINT) cannot: NULL + NULLED.
    final = final_rows(pg_db, "wide", "id, num, big_int, max_int, neg, exact, _airbyte_meta")
    assert [row[:6] for row in final] == [
        (
            1,
            Decimal("123456789012345678901234567890"),
            None,
            9223372036854775807,
            Decimal(-(2**70)),
            Decimal("12345678901234567890.123456789012345678901"),
        ),
        (
            2,
            Decimal("-98765432109876543210987654321098765432109876543210"),
            None,
            -9223372036854775808,
            Decimal(0),
            Decimal("1E-30"),
        ),
    ]
    assert [changes(row[6]) for row in final] == [[{"field": "big_int", **NULLED}]] * 2


def test_nan_and_infinity(pg_db: PgDatabase, tmp_path: Path) -> None:
    properties = {
        "id": {"type": "integer"},
        "n_nan": {"type": "number"},
        "n_inf": {"type": "number"},
        "n_ninf": {"type": "number"},
        "i_nan": {"type": "integer"},
        "obj": {"type": "object"},
        "s": {"type": "string"},
        "ok": {"type": "number"},
    }
    # Not JSON, but what Python's json module (and so many taps) write for float('nan').
    line = (
        '{"type": "RECORD", "stream": "nonfinite", "time_extracted": "' + AT + '", "record":'
        ' {"id": 1, "n_nan": NaN, "n_inf": Infinity, "n_ninf": -Infinity, "i_nan": NaN,'
        ' "obj": {"x": NaN, "y": [Infinity, 1.5]}, "s": "NaN text", "ok": 2.5}}'
    )
    stdin = messages(schema_message("nonfinite", properties, ["id"]), line, state(1))
    load(pg_db, tmp_path, stdin)
    stored = {
        "id": 1,
        "n_nan": "NaN",
        "n_inf": "Infinity",
        "n_ninf": "-Infinity",
        "i_nan": "NaN",
        "obj": {"x": "NaN", "y": ["Infinity", 1.5]},
        "s": "NaN text",
        "ok": 2.5,
    }
    recorded = [
        {"field": name, **TRUNCATED} for name in ("i_nan", "n_inf", "n_nan", "n_ninf", "obj")
    ]
    raw = raw_rows(pg_db.admin(), raw_table("nonfinite"))
    assert [row[3] for row in raw] == [stored]
    assert changes(raw[0][4]) == recorded
    # PostgreSQL 16's DECIMAL holds NaN and ±Infinity; the integer column cannot: NULL + NULLED.
    final = final_rows(
        pg_db,
        "nonfinite",
        "id, n_nan::text, n_inf::text, n_ninf::text, i_nan, obj, s, ok, _airbyte_meta",
    )
    assert final[0][:8] == (
        1,
        "NaN",
        "Infinity",
        "-Infinity",
        None,
        {"x": "NaN", "y": ["Infinity", 1.5]},
        "NaN text",
        Decimal("2.5"),
    )
    assert changes(final[0][8]) == sorted(
        [*recorded, {"field": "i_nan", **NULLED}], key=lambda c: (c["field"], c["change"])
    )
    typed = pg_db.admin().execute("SELECT n_nan, n_inf, n_ninf FROM tap_data.nonfinite")
    assert [str(value) for value in typed.fetchone() or ()] == ["NaN", "Infinity", "-Infinity"]


def test_an_empty_stream_creates_its_tables(pg_db: PgDatabase, tmp_path: Path) -> None:
    properties = {"id": {"type": "integer"}, "v": {"type": "string"}}
    load(pg_db, tmp_path, messages(schema_message("quiet", properties, ["id"]), state(1)))
    assert columns_of(pg_db, "airbyte_internal", raw_table("quiet")) == [
        tuple(column) for column in RAW_LAYOUT
    ]
    assert [row[:2] for row in columns_of(pg_db, "tap_data", "quiet")] == [
        ("id", "bigint"),
        ("v", "character varying"),
        *META_COLUMNS,
    ]
    assert raw_rows(pg_db.admin(), raw_table("quiet")) == []
    assert final_rows(pg_db, "quiet", "*") == []


def test_a_stream_without_properties_loads_into_raw(pg_db: PgDatabase, tmp_path: Path) -> None:
    first = {"a": 1, "b": {"c": [1, 2]}}
    second = {"z": "x"}
    stdin = messages(
        {"type": "SCHEMA", "stream": "bare", "schema": {"properties": {}}, "key_properties": []},
        record("bare", first, AT),
        record("bare", second, "2024-03-02T00:00:00Z"),
        state(1),
    )
    load(pg_db, tmp_path, stdin)
    raw = raw_rows(pg_db.admin(), raw_table("bare"))
    assert [row[3] for row in raw] == [first, second]
    assert [row[1].isoformat() for row in raw] == [AT, "2024-03-02T00:00:00+00:00"]
    assert [row[4]["changes"] for row in raw] == [[], []]
    assert [row[:2] for row in columns_of(pg_db, "tap_data", "bare")] == list(META_COLUMNS)
    final = pg_db.admin().execute(
        "SELECT _airbyte_raw_id, _airbyte_extracted_at, _airbyte_meta->'changes',"
        " _airbyte_generation_id FROM tap_data.bare ORDER BY _airbyte_raw_id"
    )
    assert final.fetchall() == [(row[0], row[1], [], 0) for row in raw]
