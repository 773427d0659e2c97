"""SPEC §9: raw rows committed without typing (`_airbyte_loaded_at IS NULL`, left by a run with
`disable_type_dedupe`) are typed at the start of the next run, before its own records, by the
same rules as any record."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from servers import PgDatabase

from .targetrun import messages, record, run_target, schema_message

pytestmark = pytest.mark.integration

USERS = schema_message(
    "users",
    {"id": {"type": "integer"}, "v": {"type": "string"}, "amount": {"type": "number"}},
    ["id"],
)
UNTYPED = (
    "SELECT count(*) FROM airbyte_internal.tap_data_raw__stream_users"
    " WHERE _airbyte_loaded_at IS NULL"
)
ALL_RAW = "SELECT count(*) FROM airbyte_internal.tap_data_raw__stream_users"


def test_untyped_raw_rows_are_typed_at_the_start_of_the_next_run(
    pg_db: PgDatabase, tmp_path: Path
) -> None:
    config = pg_db.config(schema="tap_data", batch_size_rows=2)
    early = [
        record("users", {"id": 1, "v": "raw only, old", "amount": 1.5}, "2024-01-01T00:00:00Z"),
        record("users", {"id": 2, "v": "raw only", "amount": "lots"}, "2024-01-01T00:00:00Z"),
        record("users", {"id": 3, "v": "raw only, newest", "amount": 3}, "2024-01-03T00:00:00Z"),
    ]
    first = run_target(
        {**config, "disable_type_dedupe": True}, messages(USERS, *early), tmp_path / "1"
    )
    assert first.returncode == 0, first.stderr
    admin = pg_db.admin()
    assert admin.execute(UNTYPED).fetchone() == (3,)

    late = [
        record("users", {"id": 1, "v": "typed run, newer", "amount": 10}, "2024-01-02T00:00:00Z"),
        record("users", {"id": 3, "v": "typed run, older", "amount": 30}, "2024-01-02T00:00:00Z"),
    ]
    second = run_target(config, messages(USERS, *late), tmp_path / "2")
    assert second.returncode == 0, second.stderr
    assert "typed 3 raw rows that an earlier run left untyped" in second.stderr
    rows = admin.execute(
        "SELECT id, v, amount, _airbyte_meta->'changes' FROM tap_data.users ORDER BY id"
    ).fetchall()
    nulled = [{"field": "amount", "change": "NULLED", "reason": "DESTINATION_TYPECAST_ERROR"}]
    assert rows == [
        (1, "typed run, newer", Decimal(10), []),
        (2, "raw only", None, nulled),
        (3, "raw only, newest", Decimal(3), []),
    ]
    assert admin.execute(UNTYPED).fetchone() == (0,)
    assert admin.execute(ALL_RAW).fetchone() == (5,)


def test_untyped_raw_rows_with_an_unstorable_key_stay_untyped(
    pg_db: PgDatabase, tmp_path: Path
) -> None:
    """A key never becomes NULL by typing (SPEC §6.3): raw rows whose key the key column cannot
    hold stay untyped, named in a warning every run, instead of merging into one NULL-key row."""
    config = pg_db.config(schema="tap_data")
    early = [
        '{"type": "RECORD", "stream": "users", "record": {"id": 1, "v": "one"}}',
        '{"type": "RECORD", "stream": "users", "record": {"id": 1e20, "v": "huge"}}',
        '{"type": "RECORD", "stream": "users", "record": {"id": "abc", "v": "text"}}',
        '{"type": "RECORD", "stream": "users", "record": {"id": 2, "v": "two"}}',
    ]
    first = run_target(
        {**config, "disable_type_dedupe": True}, messages(USERS, *early), tmp_path / "1"
    )
    assert first.returncode == 0, first.stderr
    for attempt in ("2", "3"):
        again = run_target(config, messages(USERS), tmp_path / attempt)
        assert again.returncode == 0, again.stderr
        assert "typed 0 raw rows" in again.stderr or attempt == "2", again.stderr
        assert "2 untyped raw rows of airbyte_internal.tap_data_raw__stream_users stay" in (
            again.stderr
        ), again.stderr
    admin = pg_db.admin()
    assert admin.execute("SELECT id, v FROM tap_data.users ORDER BY id").fetchall() == [
        (1, "one"),
        (2, "two"),
    ]
    assert admin.execute(UNTYPED).fetchone() == (2,)
    assert admin.execute(ALL_RAW).fetchone() == (4,)
