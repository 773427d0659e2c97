"""SPEC §9: two runs loading the same stream at once do not corrupt it. The second waits for
the first (a lock per stream's tables) up to `lock_wait_seconds`, then stops with a clear
message; nothing it read is committed, and nothing the first committed is lost."""

from __future__ import annotations

import time as clock
from pathlib import Path
from typing import Any

import pytest
from servers import PgDatabase

from .targetrun import live_run, messages, record, run_target, schema_message

pytestmark = pytest.mark.integration


@pytest.fixture
def pg_db(reached_db: Any) -> Any:
    """Every test here runs straight to the server and through PgBouncer in transaction
    mode (SPEC §12)."""
    return reached_db


SCHEMA = "tap_data"
USERS = schema_message("users", {"id": {"type": "integer"}, "v": {"type": "string"}}, ["id"])


def state(n: int) -> dict[str, Any]:
    return {"type": "STATE", "value": {"n": n}}


def final_rows(pg_db: PgDatabase) -> list[tuple[Any, ...]]:
    return pg_db.admin().execute("SELECT id, v FROM tap_data.users ORDER BY id").fetchall()


def raw_values(pg_db: PgDatabase) -> list[str]:
    found = pg_db.admin().execute(
        "SELECT _airbyte_data->>'v' FROM airbyte_internal.tap_data_raw__stream_users"
        " ORDER BY _airbyte_raw_id"
    )
    return [value for (value,) in found]


@pytest.mark.parametrize(
    ("first_layout", "second_layout"),
    [
        ("raw_and_final", "raw_and_final"),
        ("raw_and_final", "direct"),
        ("direct", "raw_and_final"),
        ("direct", "direct"),
    ],
)
def test_a_second_run_waits_then_stops_clearly(
    pg_db: PgDatabase, tmp_path: Path, first_layout: str, second_layout: str
) -> None:
    """Runs of one stream exclude each other whatever their table layouts (§4.5, §9)."""
    config = pg_db.config(schema=SCHEMA, batch_size_rows=1, table_layout=first_layout)
    with live_run(config, tmp_path / "first") as first:
        first.send(USERS, record("users", {"id": 1, "v": "first a"}), state(1))
        first.wait_for_state({"n": 1})
        second = run_target(
            {**config, "lock_wait_seconds": 1, "table_layout": second_layout},
            messages(USERS, record("users", {"id": 2, "v": "second"}), state(9)),
            tmp_path / "second",
        )
        assert second.returncode == 1, second.stderr
        # A direct run has no raw table: its message names the final table.
        tables = (
            "tap_data.users"
            if second_layout == "direct"
            else "airbyte_internal.tap_data_raw__stream_users"
        )
        assert second.error_lines() == [
            f"Another run is loading stream users (tables {tables}) into this database;"
            " waited 1 s for it to finish. Run the two one after the other,"
            " or raise lock_wait_seconds"
        ], second.stderr
        assert "Traceback" not in second.stderr
        assert second.stdout == ""
        first.send(record("users", {"id": 3, "v": "first b"}), state(2))
        assert first.finish() == 0, first.stderr
    assert final_rows(pg_db) == [(1, "first a"), (3, "first b")]
    if first_layout == "raw_and_final":
        assert raw_values(pg_db) == ["first a", "first b"]


def test_lock_wait_seconds_zero_does_not_wait(pg_db: PgDatabase, tmp_path: Path) -> None:
    config = pg_db.config(schema=SCHEMA, batch_size_rows=1)
    with live_run(config, tmp_path / "first") as first:
        first.send(USERS, state(1))
        first.wait_for_state({"n": 1})
        second = run_target(
            {**config, "lock_wait_seconds": 0}, messages(USERS, state(9)), tmp_path / "second"
        )
        assert second.returncode == 1, second.stderr
        assert "waited 0 s for it to finish" in second.stderr
        assert first.finish() == 0, first.stderr


def test_a_second_run_that_waits_loads_after_the_first(pg_db: PgDatabase, tmp_path: Path) -> None:
    config = pg_db.config(schema=SCHEMA, batch_size_rows=1)
    with (
        live_run(config, tmp_path / "first") as first,
        live_run({**config, "lock_wait_seconds": 60}, tmp_path / "second") as second,
    ):
        first.send(USERS, record("users", {"id": 1, "v": "first"}, "2024-01-01T00:00:00Z"))
        first.send(state(1))
        first.wait_for_state({"n": 1})
        newer = record("users", {"id": 1, "v": "second"}, "2024-01-02T00:00:00Z")
        second.send(USERS, newer, state(2))
        deadline = clock.monotonic() + 30
        while "waiting up to 60 s for it" not in second.stderr:
            assert clock.monotonic() < deadline, second.stderr
            clock.sleep(0.1)
        first.send(record("users", {"id": 2, "v": "first"}, "2024-01-01T00:00:00Z"), state(3))
        first.wait_for_state({"n": 3})
        assert first.finish() == 0, first.stderr
        second.wait_for_state({"n": 2}, timeout=60)
        assert second.finish() == 0, second.stderr
        assert "the other run has finished; loading" in second.stderr
    assert final_rows(pg_db) == [(1, "second"), (2, "first")]
    assert sorted(raw_values(pg_db)) == ["first", "first", "second"]
