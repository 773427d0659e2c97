"""SPEC §9: a STATE line is passed through byte for byte whatever its value holds: NaN, Infinity,
lone UTF-16 surrogate escapes, numbers beyond a double's range and integers of any length, which
JSON parsers refuse or round. Each such STATE is emitted as the exact text of its `value` once the
record before it is committed, in both layouts, whether that record took the fast way (plain JSON)
or the general one (a NUL escape in one of its strings)."""

from __future__ import annotations

from pathlib import Path

import pytest
from servers import PgDatabase

from .targetrun import messages, run_target, schema_message

pytestmark = pytest.mark.integration

SCHEMA = schema_message("users", {"id": {"type": "integer"}, "name": {"type": "string"}}, ["id"])

#: STATE values as a tap writes them, spacing included: every one must come out unchanged.
VALUES = [
    '{"x":NaN}',
    '{"bookmarks": {"users": {"x": Infinity}}}',
    '{"x": -Infinity, "y": [NaN, 1.5]}',
    '"\\ud800"',
    '{"k": "a\\udfffb", "\\ud83d": "lone high surrogate as a key"}',
    "1e400",
    '{"small": 1e-400, "big": 123456789012345678901234567890}',
    '{"digits": ' + "7" * 5_000 + "}",
    '{"caf\u00e9" :  NaN ,"t":"\u2603"}',
]


@pytest.mark.parametrize("layout", ["raw_and_final", "direct"])
@pytest.mark.parametrize("way", ["fast", "general"])
def test_state_values_json_parsers_refuse_pass_through(
    pg_db: PgDatabase, tmp_path: Path, layout: str, way: str
) -> None:
    # A NUL escape sends a record line the general way (the fast way never reads one).
    name = "n\\u0000{}" if way == "general" else "n{}"
    lines: list[str | dict[str, object]] = [SCHEMA]
    for number, value in enumerate(VALUES, start=1):
        data = f'{{"id": {number}, "name": "{name.format(number)}"}}'
        lines.append('{"type": "RECORD", "stream": "users", "record": ' + data + "}")
        # Spaces around the value are the line's, not the value's (as for any STATE).
        lines.append('{"type": "STATE", "value":  ' + value + " }")
    config = pg_db.config(schema="tap_data", table_layout=layout, batch_size_rows=1)
    run = run_target(config, messages(*lines), tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    # Each STATE is emitted as soon as its record is committed (batches of one record), as the
    # exact text of its value.
    assert run.stdout.splitlines() == VALUES
    conn = pg_db.admin()
    rows = conn.execute("SELECT id, name FROM tap_data.users ORDER BY id").fetchall()
    assert rows == [(number, f"n{number}") for number in range(1, len(VALUES) + 1)]
    if layout == "raw_and_final":
        raw = conn.execute(
            "SELECT _airbyte_data FROM airbyte_internal.tap_data_raw__stream_users"
            " ORDER BY _airbyte_data->>'id'"
        ).fetchall()
        assert sorted(row[0]["id"] for row in raw) == list(range(1, len(VALUES) + 1))


@pytest.mark.parametrize("layout", ["raw_and_final", "direct"])
def test_bad_line_after_a_nan_state_emits_that_state(
    pg_db: PgDatabase, tmp_path: Path, layout: str
) -> None:
    """The STATE before a bad line is emitted as received even when JSON parsers refuse it."""
    state = '{"pos": NaN, "s": "\\udc00"}'
    stdin = messages(
        SCHEMA,
        '{"type": "RECORD", "stream": "users", "record": {"id": 1, "name": "a"}}',
        '{"type": "STATE", "value": ' + state + "}",
        "{not json",
        '{"type": "RECORD", "stream": "users", "record": {"id": 2, "name": "b"}}',
    )
    run = run_target(pg_db.config(schema="tap_data", table_layout=layout), stdin, tmp_path)
    assert run.returncode != 0
    assert "Traceback" not in run.stderr
    assert run.error_lines()[0].startswith("Input line 4: not valid JSON"), run.error_lines()
    assert run.stdout.splitlines() == [state]
    rows = pg_db.admin().execute("SELECT id, name FROM tap_data.users ORDER BY id").fetchall()
    assert rows == [(1, "a")]
