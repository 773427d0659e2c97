"""SPEC §12, server limits: a role whose `statement_timeout`, `lock_timeout`,
`idle_in_transaction_session_timeout` and `idle_session_timeout` are 1 s (as Supabase and many
DBAs set them) loads what the same run loads without them: slow input with pauses longer than
every limit, dedup merges, a widened column, an overwrite swap and a lock wait longer than the
role's lock_timeout. Straight to the server and through PgBouncer in transaction mode; the
connection's own `options` still win over the role's values."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from poolers import pooled
from psycopg import sql
from servers import PgDatabase

from .targetrun import live_run, messages, record, run_target, schema_message

pytestmark = pytest.mark.integration

LIMITS = {
    "statement_timeout": "1s",
    "lock_timeout": "1s",
    "idle_in_transaction_session_timeout": "1s",
    "idle_session_timeout": "1s",
}


@contextlib.contextmanager
def _limited(pg_db: PgDatabase) -> Iterator[None]:
    admin = pg_db.admin()
    for name, value in LIMITS.items():
        admin.execute(
            sql.SQL("ALTER ROLE {} SET {} = {}").format(
                sql.Identifier(pg_db.role.name), sql.Identifier(name), sql.Literal(value)
            )
        )
    yield


@pytest.fixture(params=["straight", "transaction pooling"])
def target_of(request: pytest.FixtureRequest, pg_db: PgDatabase) -> Iterator[Any]:
    """Where the target connects: the server, or PgBouncer in transaction mode before it."""
    with _limited(pg_db):
        if request.param == "straight":
            yield pg_db
        else:
            with pooled(pg_db, "transaction", pool_size=20) as database:
                yield database


def _wait_for_row(admin: psycopg.Connection[Any], key: int, timeout: float = 15) -> None:
    """Until users row `key` is committed (the STATEs wait for the overwrite's swap, §6.1)."""
    deadline = time.monotonic() + timeout
    while not admin.execute("SELECT 1 FROM tap.users WHERE id = %s", (key,)).fetchone():
        assert time.monotonic() < deadline, f"row {key} not committed within {timeout} s"
        time.sleep(0.1)


def _rows(admin: psycopg.Connection[Any], table: str) -> list[tuple[Any, ...]]:
    return admin.execute(
        sql.SQL("SELECT id, v FROM {} ORDER BY id").format(sql.Identifier("tap", table))
    ).fetchall()


@pytest.mark.parametrize("layout", ["raw_and_final", "direct"])
def test_role_limits_never_fail_a_slow_run(
    target_of: Any, pg_db: PgDatabase, tmp_path: Path, layout: str
) -> None:
    admin = pg_db.admin()
    config = target_of.config(
        schema="tap",
        table_layout=layout,
        batch_wait_limit_seconds=3,
        lock_wait_seconds=20,
        stream_load_methods={"snap": "overwrite"},
    )
    users = schema_message("users", {"id": {"type": "integer"}, "v": {"type": "integer"}}, ["id"])
    wider = schema_message("users", {"id": {"type": "integer"}, "v": {"type": "string"}}, ["id"])
    snap = schema_message("snap", {"id": {"type": "integer"}, "v": {"type": "string"}})
    with live_run(config, tmp_path / "run") as run:
        run.send(users, snap)
        for i in range(4):
            # Pauses of 2.5 s: longer than every limit, shorter than batch_wait_limit_seconds,
            # so a batch's COPY stays open across them.
            run.send(record("users", {"id": i % 3, "v": i}), record("snap", {"id": i, "v": "s"}))
            time.sleep(2.5)
        run.send({"type": "STATE", "value": 1})
        _wait_for_row(admin, 2)
        # A reader holds the users table for 3 s while the run must widen its column.
        holder = pg_db.admin()
        holder.autocommit = False
        holder.execute("SELECT count(*) FROM tap.users")
        run.send(wider, record("users", {"id": 7, "v": "seven"}), {"type": "STATE", "value": 2})
        time.sleep(3)
        holder.rollback()
        _wait_for_row(admin, 7, timeout=20)
        time.sleep(2.5)  # idle in the pool longer than idle_session_timeout
        run.send(record("users", {"id": 8, "v": "eight"}), record("snap", {"id": 9, "v": "t"}))
        run.send({"type": "STATE", "value": 3})
        assert run.finish() == 0, run.stderr
        assert "statement_timeout 1s" in run.stderr
    # The STATEs follow records of the overwrite stream: only the last, after its swap (§6.1).
    assert run.stdout == ["3"]
    assert _rows(admin, "users") == [(0, "3"), (1, "1"), (2, "2"), (7, "seven"), (8, "eight")]
    assert _rows(admin, "snap") == [(0, "s"), (1, "s"), (2, "s"), (3, "s"), (9, "t")]
    kinds = admin.execute(
        "SELECT data_type FROM information_schema.columns WHERE table_schema = 'tap'"
        " AND table_name = 'users' AND column_name = 'v'"
    ).fetchone()
    assert kinds == ("character varying",)


def test_the_connections_own_options_win_over_the_role(pg_db: PgDatabase, tmp_path: Path) -> None:
    """A statement_timeout the user gives in jdbc_url_params `options` is the user's own and
    applies to every statement (a role's value would not): 1 ms cancels even the session
    setup, which ends the run in one sentence naming the setting, with no traceback."""
    with _limited(pg_db):
        run = run_target(
            pg_db.config(schema="tap", jdbc_url_params="options=-c%20statement_timeout%3D1"),
            messages(
                schema_message("users", {"id": {"type": "integer"}}, ["id"]),
                record("users", {"id": 1}),
                {"type": "STATE", "value": "done"},
            ),
            tmp_path / "run",
        )
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr
    (error,) = run.error_lines()
    assert "statement_timeout given in jdbc_url_params options" in error, error
    assert run.stdout == ""
