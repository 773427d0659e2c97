"""SPEC §9 faults: a connection dropped mid-batch, and a server restarting mid-run, are retried
from the last committed batch (a bounded number of times), and then the run stops with one clear
sentence; every row is written once and nothing committed is lost."""

from __future__ import annotations

import time as clock
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from servers import PgDatabase, PostgresServer, start_postgres

from .targetrun import LiveRun, live_run, record, schema_message, tables_in

pytestmark = pytest.mark.integration

USERS = schema_message("users", {"id": {"type": "integer"}, "v": {"type": "string"}}, ["id"])
COPYING = (
    "SELECT pid FROM pg_stat_activity WHERE usename = %s AND query LIKE 'COPY%%'"
    " AND pid <> pg_backend_pid()"
)


def state(n: int) -> dict[str, Any]:
    return {"type": "STATE", "value": {"n": n}}


def users(first: int, count: int) -> list[dict[str, Any]]:
    return [record("users", {"id": i, "v": f"user {i}"}) for i in range(first, first + count)]


def wait_for_copies(pg_db: PgDatabase, live: LiveRun, count: int = 2) -> list[int]:
    """The loader's backends that are inside a COPY (raw and final: `count` of them), once
    they all are."""
    deadline = clock.monotonic() + 30
    while True:
        pids = [pid for (pid,) in pg_db.admin().execute(COPYING, (pg_db.role.name,))]
        if len(pids) >= count:
            return pids
        assert clock.monotonic() < deadline, live.stderr
        clock.sleep(0.05)


def final_ids(pg_db: PgDatabase) -> list[int]:
    return [i for (i,) in pg_db.admin().execute("SELECT id FROM tap_data.users ORDER BY id")]


def raw_ids(pg_db: PgDatabase) -> list[int]:
    found = pg_db.admin().execute(
        "SELECT (_airbyte_data->>'id')::int FROM airbyte_internal.tap_data_raw__stream_users"
        " ORDER BY 1"
    )
    return [i for (i,) in found]


def check_raw_ids(pg_db: PgDatabase, layout: str, expected: list[int]) -> None:
    """The raw table holds `expected`, or, in the direct layout, there is none (§4.5)."""
    if layout == "direct":
        assert tables_in(pg_db.admin(), "airbyte_internal") == []
    else:
        assert raw_ids(pg_db) == expected


LAYOUTS = pytest.mark.parametrize("layout", ["raw_and_final", "direct"])


@LAYOUTS
def test_a_connection_killed_mid_batch_is_retried(
    pg_db: PgDatabase, tmp_path: Path, layout: str
) -> None:
    config = pg_db.config(schema="tap_data", batch_size_rows=10, table_layout=layout)
    with live_run(config, tmp_path / "run") as live:
        live.send(USERS, *users(1, 10), state(1))
        live.wait_for_state({"n": 1})
        live.send(*users(11, 5))
        for pid in wait_for_copies(pg_db, live, 1 if layout == "direct" else 2):
            pg_db.admin().execute("SELECT pg_terminate_backend(%s)", (pid,))
        live.send(*users(16, 5), state(2))
        live.wait_for_state({"n": 2})
        assert live.finish() == 0, live.stderr
        assert "lost the connection to the database while writing a batch of 10" in (live.stderr), (
            live.stderr
        )
    assert final_ids(pg_db) == list(range(1, 21))
    check_raw_ids(pg_db, layout, list(range(1, 21)))


@pytest.fixture
def own_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """A server of this test's own, which it may restart or stop."""
    server = start_postgres("pgserver16", tmp_path_factory.mktemp("restartable"))
    try:
        yield server
    finally:
        server.stop()


@LAYOUTS
def test_a_server_restart_mid_run_is_retried(
    own_server: PostgresServer, tmp_path: Path, layout: str
) -> None:
    pg_db = PgDatabase.create(own_server)
    try:
        config = pg_db.config(schema="tap_data", batch_size_rows=10, table_layout=layout)
        with live_run(config, tmp_path / "run") as live:
            live.send(USERS, *users(1, 10), state(1))
            live.wait_for_state({"n": 1})
            live.send(*users(11, 5))
            wait_for_copies(pg_db, live, 1 if layout == "direct" else 2)
            own_server.pg_ctl("-m", "fast", "restart")
            live.send(*users(16, 5), state(2))
            live.wait_for_state({"n": 2}, timeout=60)
            assert live.finish() == 0, live.stderr
        assert final_ids(pg_db) == list(range(1, 21))
        check_raw_ids(pg_db, layout, list(range(1, 21)))
    finally:
        pg_db.drop()


def test_a_server_that_stays_down_stops_the_run_clearly(
    own_server: PostgresServer, tmp_path: Path
) -> None:
    pg_db = PgDatabase.create(own_server)
    try:
        config = pg_db.config(schema="tap_data", batch_size_rows=10)
        with live_run(config, tmp_path / "run") as live:
            live.send(USERS, *users(1, 10), state(1))
            live.wait_for_state({"n": 1})
            live.send(*users(11, 5))
            wait_for_copies(pg_db, live)
            own_server.pg_ctl("-m", "fast", "stop")
            try:
                live.send(*users(16, 5), state(2))
                returncode = live.finish(timeout=120)
            finally:
                own_server.pg_ctl("start")
            stderr = live.stderr
        assert returncode == 1, stderr
        errors = [line for line in stderr.splitlines() if "| ERROR" in line]
        assert len(errors) == 1, stderr
        message = errors[0].split("| ", 3)[-1]
        assert message.startswith(
            "Lost the connection to the database while writing stream users, and 4 more attempts"
            " failed too (last error: "
        ), message
        assert message.endswith(
            "). Every record before the last STATE this run emitted is committed: run again from"
            " that state"
        ), message
        assert "Connection refused" in message or "could not connect" in message.lower(), message
        assert "Traceback" not in stderr
        assert live.stdout == ['{"n": 1}'], live.stdout
        assert final_ids(pg_db) == list(range(1, 11))
        assert raw_ids(pg_db) == list(range(1, 11))
    finally:
        pg_db.drop()
