"""SPEC §9: a run waiting for another session's lock says so every 30 s, naming that session,
and gives up after `lock_wait_seconds` with one sentence; and a connection dropped in any phase
(table setup and DDL, the final swap of a full refresh) is retried, not a traceback.

The other session is a test connection holding `LOCK TABLE` in an open transaction, the way a
long report query or a forgotten `BEGIN` in psql holds a loader's table."""

from __future__ import annotations

import time as clock
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from servers import PgDatabase

from .targetrun import LiveRun, live_run, messages, record, run_target, schema_message

pytestmark = pytest.mark.integration


@pytest.fixture
def pg_db(reached_db: Any) -> Any:
    """Every test here runs straight to the server and through PgBouncer in transaction
    mode (SPEC §12)."""
    return reached_db


SCHEMA = "tap_data"
PROPERTIES: dict[str, Any] = {"id": {"type": "integer"}, "v": {"type": "string"}}
USERS = schema_message("users", PROPERTIES, ["id"])
#: The same stream with one more property: its setup must ALTER the final table.
WIDER = schema_message("users", {**PROPERTIES, "w": {"type": "string"}}, ["id"])
HOLDER = "report-query"
#: A backend of the loader role waiting for a lock.
WAITING = "SELECT pid, query FROM pg_stat_activity WHERE usename = %s AND wait_event_type = 'Lock'"


def state(n: int) -> dict[str, Any]:
    return {"type": "STATE", "value": {"n": n}}


def user(number: int, **extra: Any) -> dict[str, Any]:
    return record("users", {"id": number, "v": f"user {number}", **extra})


def final_rows(pg_db: PgDatabase, columns: str = "id, v") -> list[tuple[Any, ...]]:
    return pg_db.admin().execute(f"SELECT {columns} FROM tap_data.users ORDER BY id").fetchall()  # noqa: S608


@contextmanager
def table_locked(pg_db: PgDatabase, mode: str = "ACCESS EXCLUSIVE") -> Iterator[int]:
    """Another session holding a lock on the users table; yields its pid."""
    with psycopg.connect(pg_db.server.admin_dsn(pg_db.dbname), autocommit=True) as holder:
        holder.execute(f"SET application_name = '{HOLDER}'")
        holder.execute("BEGIN")
        holder.execute(f"LOCK TABLE tap_data.users IN {mode} MODE")
        try:
            yield holder.info.backend_pid
        finally:
            holder.execute("ROLLBACK")


def wait_for_lock_wait(pg_db: PgDatabase, live: LiveRun) -> int:
    """The pid of the loader's backend that waits for the lock."""
    deadline = clock.monotonic() + 30
    while True:
        found = pg_db.admin().execute(WAITING, (pg_db.role.name,)).fetchone()
        if found is not None:
            return int(found[0])
        assert clock.monotonic() < deadline, live.stderr
        clock.sleep(0.05)


def first_load(pg_db: PgDatabase, tmp_path: Path, **settings: Any) -> None:
    done = run_target(
        pg_db.config(schema=SCHEMA, **settings), messages(USERS, user(1)), tmp_path / "first"
    )
    assert done.returncode == 0, done.stderr


def test_a_lock_held_past_lock_wait_seconds_stops_the_run_in_one_sentence(
    pg_db: PgDatabase, tmp_path: Path
) -> None:
    first_load(pg_db, tmp_path)
    config = pg_db.config(schema=SCHEMA, lock_wait_seconds=3)
    with table_locked(pg_db) as holder:
        started = clock.monotonic()
        run = run_target(config, messages(USERS, user(2), state(1)), tmp_path / "blocked")
        took = clock.monotonic() - started
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr
    errors = run.error_lines()
    assert len(errors) == 1, run.stderr
    assert errors[0].startswith(
        "Waited 3 s (lock_wait_seconds) for a lock on tap_data.users held by another session"
        f" (pid {holder}, application '{HOLDER}', user "
    ), errors[0]
    assert errors[0].endswith(
        "): end that session's transaction or run again when it is done, or raise"
        " lock_wait_seconds. Every record before the last STATE this run emitted is committed."
    ), errors[0]
    assert took < 15, took
    assert run.stdout == ""
    assert final_rows(pg_db) == [(1, "user 1")]


def test_a_long_lock_wait_is_reported_every_30_seconds(pg_db: PgDatabase, tmp_path: Path) -> None:
    first_load(pg_db, tmp_path)
    config = pg_db.config(schema=SCHEMA, lock_wait_seconds=120)
    with live_run(config, tmp_path / "waits") as live:
        with table_locked(pg_db) as holder:
            live.send(USERS, user(2), state(1))
            wait_for_lock_wait(pg_db, live)
            deadline = clock.monotonic() + 45
            while "so far for a lock" not in live.stderr:
                assert clock.monotonic() < deadline, live.stderr
                clock.sleep(0.5)
        assert live.finish() == 0, live.stderr
        reports = [line for line in live.stderr.splitlines() if "so far for a lock" in line]
    assert len(reports) == 1, reports
    assert (
        f"for a lock on tap_data.users held by another session (pid {holder}, application"
        f" '{HOLDER}', user "
    ) in reports[0], reports[0]
    assert "giving up after 120 s (lock_wait_seconds)" in reports[0], reports[0]
    assert final_rows(pg_db) == [(1, "user 1"), (2, "user 2")]


def test_a_connection_killed_during_table_setup_is_retried(
    pg_db: PgDatabase, tmp_path: Path
) -> None:
    first_load(pg_db, tmp_path)
    config = pg_db.config(schema=SCHEMA, batch_size_rows=1)
    with live_run(config, tmp_path / "setup") as live:
        with table_locked(pg_db):
            live.send(WIDER, user(2, w="wide"), state(1))
            waiting = wait_for_lock_wait(pg_db, live)
            pg_db.admin().execute("SELECT pg_terminate_backend(%s)", (waiting,))
        live.wait_for_state({"n": 1}, timeout=60)
        assert live.finish() == 0, live.stderr
        stderr = live.stderr
    assert "Traceback" not in stderr
    assert (
        "Stream users: lost the connection to the database while setting up the tables of it"
    ) in stderr, stderr
    assert final_rows(pg_db, "id, v, w") == [(1, "user 1", None), (2, "user 2", "wide")]


def test_a_connection_killed_during_the_full_refresh_swap_is_retried(
    pg_db: PgDatabase, tmp_path: Path
) -> None:
    first_load(pg_db, tmp_path, load_method="overwrite")
    config = pg_db.config(schema=SCHEMA, load_method="overwrite", batch_size_rows=1)
    with live_run(config, tmp_path / "swap") as live:
        live.send(USERS, user(7), user(8), state(1))
        live.wait_until_idle()
        with table_locked(pg_db, "ACCESS SHARE"):
            assert live.process.stdin is not None
            live.process.stdin.close()  # end of input: the swap's TRUNCATE waits for the lock
            waiting = wait_for_lock_wait(pg_db, live)
            pg_db.admin().execute("SELECT pg_terminate_backend(%s)", (waiting,))
        # The STATE after the load's records comes once the swap has committed (§6.1).
        assert live.finish(timeout=60) == 0, live.stderr
        assert live.stdout == ['{"n": 1}'], live.stdout
        stderr = live.stderr
    assert "Traceback" not in stderr
    assert "lost the connection to the database while ending the full refresh of it" in stderr
    assert final_rows(pg_db) == [(7, "user 7"), (8, "user 8")]
