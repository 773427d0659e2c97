"""SPEC §4.4, §9: values PostgreSQL cannot hold in their column never stall a stream. A number
beyond NUMERIC's range (131072 digits before the point, 16383 after) is NULL + change in a
number, integer or JSONB column and its text, exactly as received, in a VARCHAR column; the raw
table keeps it as that text (TRUNCATED). A date-time or time offset beyond PostgreSQL's ±15:59
is NULL + change; a lowercase `z`, a leap second and `24:00:00` load as PostgreSQL stores them.
Every layout, the fast way and the general way (a line with `\\u0000` takes the general way)."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql
from servers import PgDatabase

from .targetrun import run_target, schema_message

pytestmark = pytest.mark.integration

NULLED = {"change": "NULLED", "reason": "DESTINATION_TYPECAST_ERROR"}
TRUNCATED = {"change": "TRUNCATED", "reason": "DESTINATION_SERIALIZATION_ERROR"}

PROPERTIES = {
    "id": {"type": "integer"},
    "n": {"type": "number"},
    "i": {"type": "integer"},
    "s": {"type": "string"},
    "j": {},
    "o": {"type": "object"},
    "a": {"type": "array"},
    "tz": {"type": "string", "format": "date-time"},
    "ts": {
        "type": "string",
        "format": "date-time",
        "airbyte_type": "timestamp_without_timezone",
    },
    "ttz": {"type": "string", "format": "time", "airbyte_type": "time_with_timezone"},
    "t": {"type": "string", "format": "time"},
}
#: Every column as text, as PostgreSQL stores it (psycopg cannot read a TIME of 24:00:00).
COLUMNS = ["n", "i", "s", "j", "o", "a", "tz", "ts", "ttz", "t"]

#: (property, value as written in the line, column text expected, NULLED?, raw JSON expected
#: (None: the value as written), TRUNCATED?)
CASES: list[tuple[str, str, str | None, bool, str | None, bool]] = [
    ("n", "1e200000", None, True, '"1e200000"', True),
    ("n", "-1E+200000", None, True, '"-1E+200000"', True),
    ("n", "1e-20000", None, True, '"1e-20000"', True),
    ("n", "1e131072", None, True, '"1e131072"', True),
    ("n", "1.5e-16383", None, True, '"1.5e-16383"', True),
    ("n", "1e99999999999999999999", None, True, '"1e99999999999999999999"', True),
    ("n", "1e131071", "1" + "0" * 131071, False, None, False),
    ("n", "-" + "9" * 5000, "-" + "9" * 5000, False, None, False),
    ("i", "1e131071", None, True, None, False),
    ("i", "9" * 5000, None, True, None, False),
    ("i", "1e200000", None, True, '"1e200000"', True),
    ("i", "1e-20000", None, True, '"1e-20000"', True),
    ("s", "1e200000", "1e200000", False, '"1e200000"', True),
    ("s", "-1E+200000", "-1E+200000", False, '"-1E+200000"', True),
    # A VARCHAR column takes a number's text exactly as received.
    ("s", "1e400", "1e400", False, None, False),
    ("s", "1E5", "1E5", False, None, False),
    ("s", "2.5e-3", "2.5e-3", False, None, False),
    ("s", "1.50", "1.50", False, None, False),
    ("s", "-0.0", "-0.0", False, None, False),
    ("s", "0.000001", "0.000001", False, None, False),
    ("s", "0.0000001", "0.0000001", False, None, False),
    ("s", "123456789012345678901234567890", "123456789012345678901234567890", False, None, False),
    ("j", "1e200000", None, True, '"1e200000"', True),
    ("j", "1e-20000", None, True, '"1e-20000"', True),
    ("j", '{"x": [1, 1e200000]}', '{"x": [1, "1e200000"]}', False, '{"x": [1, "1e200000"]}', True),
    ("o", '{"x": 1e-20000}', '{"x": "1e-20000"}', False, '{"x": "1e-20000"}', True),
    ("a", "[1e131072, 2]", '["1e131072", 2]', False, '["1e131072", 2]', True),
    ("tz", '"2024-01-01T00:00:00+20:00"', None, True, None, False),
    ("tz", '"2024-01-01T00:00:00.5-16:00"', None, True, None, False),
    ("tz", '"2024-01-01T00:00:00+1600"', None, True, None, False),
    ("tz", '"2024-01-01T05:00:00+15:59"', "2023-12-31 13:01:00+00", False, None, False),
    ("tz", '"2024-01-01T00:00:00z"', "2024-01-01 00:00:00+00", False, None, False),
    ("tz", '"2024-01-01t00:00:00.5z"', "2024-01-01 00:00:00.5+00", False, None, False),
    ("tz", '"2024-12-31T23:59:60Z"', "2025-01-01 00:00:00+00", False, None, False),
    ("tz", '"2024-01-01T12:30:60+02:00"', "2024-01-01 10:31:00+00", False, None, False),
    ("tz", '"2024-01-01T24:00:00"', "2024-01-02 00:00:00+00", False, None, False),
    ("tz", '"2024-01-01T23:59:60.5Z"', None, True, None, False),
    ("ts", '"2024-01-01T00:00:00+20:00"', None, True, None, False),
    ("ts", '"2024-01-01 24:00:00.000"', "2024-01-02 00:00:00", False, None, False),
    ("ttz", '"12:00:00-23:00"', None, True, None, False),
    ("ttz", '"12:00:00z"', "12:00:00+00", False, None, False),
    ("ttz", '"23:59:60+03"', "24:00:00+03", False, None, False),
    ("ttz", '"23:59:59.9999999-02:30"', "24:00:00-02:30", False, None, False),
    ("t", '"24:00:00"', "24:00:00", False, None, False),
    ("t", '"12:00:60"', "12:01:00", False, None, False),
    ("t", '"12:00:00+16"', None, True, None, False),
]


def _line(record_text: str) -> str:
    return '{"type": "RECORD", "stream": "vals", "record": ' + record_text + "}"


def _input(general: bool) -> tuple[str, list[dict[str, int]]]:
    """The records of CASES (each with a good `n`), between good records and STATEs; with
    `general`, every record holds a NUL escape, so that none takes the fast way."""
    extra = ', "z": "\\u0000"' if general else ""
    lines = [json.dumps(schema_message("vals", {**PROPERTIES, "z": {"type": "string"}}))]
    lines.append(_line('{"id": 0, "n": 1.5' + extra + "}"))
    lines.append('{"type": "STATE", "value": {"before": 1}}')
    for number, (prop, text, *_) in enumerate(CASES, start=1):
        lines.append(_line(f'{{"id": {number}, "{prop}": {text}{extra}}}'))
    lines.append('{"type": "STATE", "value": {"after": 1}}')
    return "".join(line + "\n" for line in lines), [{"after": 1}]


@pytest.mark.parametrize("general", [False, True], ids=["fast", "general"])
@pytest.mark.parametrize("layout", ["raw_and_final", "direct", "raw_only"])
def test_values_postgresql_cannot_hold_are_nulled_never_a_refused_batch(
    pg_db: PgDatabase, tmp_path: Path, layout: str, general: bool
) -> None:
    config = pg_db.config(schema="e")
    if layout == "raw_only":
        config["disable_type_dedupe"] = True
    else:
        config["table_layout"] = layout
    text, states = _input(general)
    run = run_target(config, text, tmp_path / "load")
    assert run.returncode == 0, run.stderr[-3000:]
    assert [json.loads(line) for line in run.stdout.splitlines()] == states
    if layout == "raw_only":
        # The next typed run types what the raw-only run left, by the same rules.
        typed = run_target(pg_db.config(schema="e"), text.splitlines()[0] + "\n", tmp_path / "t")
        assert typed.returncode == 0, typed.stderr[-3000:]
    conn = pg_db.admin()
    truncated_z = [{"field": "z", **TRUNCATED}] if general else []
    columns = sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(c)) for c in COLUMNS)
    final = conn.execute(
        sql.SQL("SELECT id, {}, _airbyte_meta->'changes' FROM e.vals ORDER BY id").format(columns)
    ).fetchall()
    assert len(final) == len(CASES) + 1
    assert final[0][1:2] == ("1.5",)
    raw: list[Any] = []
    if layout != "direct":
        raw = conn.execute(
            "SELECT _airbyte_data::text, _airbyte_meta->'changes'"
            " FROM airbyte_internal.e_raw__stream_vals ORDER BY (_airbyte_data->>'id')::int"
        ).fetchall()
        assert len(raw) == len(CASES) + 1
    for number, (prop, written, column, nulled, raw_json, truncated) in enumerate(CASES, 1):
        row = final[number]
        where = f"{prop} = {written}"
        assert row[0] == number, where
        values = dict(zip(COLUMNS, row[1:-1], strict=True))
        expected = {c: None for c in COLUMNS}
        if layout == "raw_only" and prop == "s" and not truncated:
            # Typed later from the raw table, whose JSONB keeps the number's value, not its
            # spelling: the column takes the number's text as JSONB writes it.
            column = conn.execute("SELECT (%s::jsonb)::text", (written,)).fetchone()[0]
        if column is not None:
            expected[prop] = json.dumps(json.loads(column)) if prop in ("j", "o", "a") else column
        assert values == expected, where
        cleaning = [{"field": prop, **TRUNCATED}] if truncated else []
        typing = [{"field": prop, **NULLED}] if nulled else []
        assert sorted(row[-1], key=json.dumps) == sorted(
            [*cleaning, *truncated_z, *typing], key=json.dumps
        ), where
        if raw:
            data, changes = raw[number]
            stored = json.loads(data, parse_float=Decimal, parse_int=Decimal)[prop]
            sent = json.loads(raw_json or written, parse_float=Decimal, parse_int=Decimal)
            assert type(stored) is type(sent), where
            assert stored == sent, where
            assert sorted(changes, key=json.dumps) == sorted(
                [*cleaning, *truncated_z], key=json.dumps
            ), where
