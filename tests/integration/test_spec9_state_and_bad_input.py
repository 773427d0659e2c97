"""SPEC §9: STATE is emitted once the records before it are committed, byte for byte; bad input
stops the run naming the line, after committing everything before it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from servers import PgDatabase

from .targetrun import messages, run_target

SCHEMA = {
    "type": "SCHEMA",
    "stream": "users",
    "schema": {"properties": {"id": {"type": "integer"}, "name": {"type": "string"}}},
    "key_properties": ["id"],
}


def record(number: int) -> dict[str, Any]:
    return {"type": "RECORD", "stream": "users", "record": {"id": number, "name": f"n{number}"}}


def final_ids(pg_db: PgDatabase) -> list[int]:
    rows = pg_db.admin().execute("SELECT id FROM tap_data.users ORDER BY id").fetchall()
    return [row[0] for row in rows]


def raw_count(pg_db: PgDatabase) -> int:
    row = (
        pg_db.admin()
        .execute("SELECT count(*) FROM airbyte_internal.tap_data_raw__stream_users")
        .fetchone()
    )
    assert row is not None
    return int(row[0])


def test_state_passes_through_byte_for_byte(pg_db: PgDatabase, tmp_path: Path) -> None:
    value = '{"bookmarks": {"users": {"x": 1.5, "y": 12345678901234567890.123, "z": 1e3}}}'
    state = '{"type": "STATE", "value": ' + value + "}"
    stdin = messages(SCHEMA, record(1), state)
    run = run_target(pg_db.config(schema="tap_data"), stdin, tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [value]


def test_state_is_emitted_after_each_committed_batch(pg_db: PgDatabase, tmp_path: Path) -> None:
    lines: list[dict[str, Any] | str] = [SCHEMA]
    for number in range(1, 7):
        lines.append(record(number))
        lines.append({"type": "STATE", "value": {"n": number}})
    run = run_target(pg_db.config(schema="tap_data", batch_size_rows=2), messages(*lines), tmp_path)
    assert run.returncode == 0, run.stderr
    # STATE n=1 waits for record 1, which commits with record 2 (batches of two); STATE n=2
    # arrives with nothing pending and goes out at once. Every state is emitted, in order,
    # none before its records are committed.
    assert [json.loads(line) for line in run.stdout.splitlines()] == [
        {"n": number} for number in range(1, 7)
    ]
    assert final_ids(pg_db) == [1, 2, 3, 4, 5, 6]


def test_state_waits_for_records_of_every_stream(pg_db: PgDatabase, tmp_path: Path) -> None:
    other = {**SCHEMA, "stream": "orders"}
    stdin = messages(
        SCHEMA,
        other,
        {"type": "RECORD", "stream": "orders", "record": {"id": 1, "name": "o"}},
        record(1),
        record(2),
        {"type": "STATE", "value": {"n": 1}},
    )
    run = run_target(pg_db.config(schema="tap_data", batch_size_rows=2), stdin, tmp_path)
    assert run.returncode == 0, run.stderr
    # The users batch commits with the orders record still pending: no state until the end.
    assert run.stdout.splitlines() == ['{"n": 1}']
    row = pg_db.admin().execute("SELECT count(*) FROM tap_data.orders").fetchone()
    assert row == (1,)


def run_bad(pg_db: PgDatabase, tmp_path: Path, bad_line: str) -> tuple[Any, list[str]]:
    """Two records and a STATE, then the bad line (line 5), then a record never loaded."""
    stdin = messages(
        SCHEMA, record(1), record(2), {"type": "STATE", "value": {"n": 2}}, bad_line, record(3)
    )
    run = run_target(pg_db.config(schema="tap_data"), stdin, tmp_path)
    return run, run.error_lines()


def assert_kept_before_bad_line(pg_db: PgDatabase, run: Any) -> None:
    assert run.returncode != 0
    assert run.stdout.splitlines() == ['{"n": 2}']
    assert final_ids(pg_db) == [1, 2]
    assert raw_count(pg_db) == 2
    assert "Traceback" not in run.stderr


def test_malformed_json_names_the_line(pg_db: PgDatabase, tmp_path: Path) -> None:
    run, errors = run_bad(pg_db, tmp_path, '{"type": "RECORD", "stream": "users", "rec')
    assert_kept_before_bad_line(pg_db, run)
    assert len(errors) == 1
    assert errors[0].startswith("Input line 5: not valid JSON"), errors


def test_unknown_message_type_names_the_line(pg_db: PgDatabase, tmp_path: Path) -> None:
    run, errors = run_bad(pg_db, tmp_path, json.dumps({"type": "RECORDS", "stream": "users"}))
    assert_kept_before_bad_line(pg_db, run)
    assert errors == [
        "Input line 5: unknown message type 'RECORDS'; expected SCHEMA, RECORD, STATE,"
        " ACTIVATE_VERSION or BATCH."
    ]


def test_record_before_schema_names_the_line(pg_db: PgDatabase, tmp_path: Path) -> None:
    bad = json.dumps({"type": "RECORD", "stream": "orders", "record": {"id": 1}})
    run, errors = run_bad(pg_db, tmp_path, bad)
    assert_kept_before_bad_line(pg_db, run)
    assert errors == [
        "Input line 5: RECORD for stream orders arrived before that stream's SCHEMA message."
    ]


def test_schema_without_properties_names_the_line(pg_db: PgDatabase, tmp_path: Path) -> None:
    bad = json.dumps({"type": "SCHEMA", "stream": "orders", "schema": {"type": "object"}})
    run, errors = run_bad(pg_db, tmp_path, bad)
    assert_kept_before_bad_line(pg_db, run)
    assert len(errors) == 1
    assert errors[0].startswith(
        "Input line 5: SCHEMA message for stream orders has no properties key"
    )


def test_missing_key_property_names_stream_and_property(pg_db: PgDatabase, tmp_path: Path) -> None:
    bad = json.dumps({"type": "RECORD", "stream": "users", "record": {"name": "no id"}})
    run, errors = run_bad(pg_db, tmp_path, bad)
    assert_kept_before_bad_line(pg_db, run)
    assert errors == ["Input line 5: record of stream users has no value for key property id."]


def test_empty_properties_load(pg_db: PgDatabase, tmp_path: Path) -> None:
    schema = {"type": "SCHEMA", "stream": "events", "schema": {"properties": {}}}
    stdin = messages(schema, {"type": "RECORD", "stream": "events", "record": {"a": 1}})
    run = run_target(pg_db.config(schema="tap_data"), stdin, tmp_path)
    assert run.returncode == 0, run.stderr
    columns = pg_db.admin().execute(
        "SELECT column_name FROM information_schema.columns"
        " WHERE table_schema = 'tap_data' AND table_name = 'events' ORDER BY ordinal_position"
    )
    assert [row[0] for row in columns.fetchall()] == [
        "_airbyte_raw_id",
        "_airbyte_extracted_at",
        "_airbyte_meta",
        "_airbyte_generation_id",
    ]
    data = pg_db.admin().execute(
        "SELECT _airbyte_data FROM airbyte_internal.tap_data_raw__stream_events"
    )
    assert data.fetchall() == [({"a": 1},)]
