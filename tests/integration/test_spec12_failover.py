"""SPEC §12, failover and read-only servers, with a real streaming standby (pg_basebackup of
the Debian PostgreSQL 15): `host` lists both servers as libpq takes them, and
`targetServerType=primary` picks the writable one; when the primary stops mid-run and the
standby is promoted, the run reconnects within the retry bound and continues, nothing lost,
no duplicate key, STATE only for committed records. A standby alone, or a role whose
transactions are read-only, is refused before any input is read, in one sentence."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql
from replicas import promote, start_standby, wait_replayed
from servers import PgDatabase, PostgresServer, start_postgres

from .targetrun import live_run, messages, record, run_target, schema_message, tables_in

pytestmark = pytest.mark.integration

USERS = schema_message("users", {"id": {"type": "integer"}, "v": {"type": "string"}}, ["id"])


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[PostgresServer, PostgresServer]]:
    """A primary of its own (the test stops it) and its streaming standby."""
    primary = start_postgres("debian15", tmp_path / "primary")
    try:
        standby = start_standby(primary, tmp_path / "standby")
        try:
            yield primary, standby
        finally:
            standby.stop()
    finally:
        primary.stop()


def _config(database: PgDatabase, servers: list[PostgresServer], **extra: Any) -> dict[str, Any]:
    return database.config(
        **{
            "host": ",".join(server.host for server in servers),
            "port": ",".join(str(server.port) for server in servers),
            "jdbc_url_params": "targetServerType=primary&connectTimeout=5",
            "schema": "tap",
            **extra,
        }
    )


@pytest.mark.parametrize("layout", ["raw_and_final", "direct"])
def test_a_run_rides_out_a_failover(
    pair: tuple[PostgresServer, PostgresServer], tmp_path: Path, layout: str
) -> None:
    primary, standby = pair
    database = PgDatabase.create(primary)
    wait_replayed(primary, standby)
    config = _config(
        database,
        [standby, primary],
        table_layout=layout,
        batch_size_rows=40,
        batch_wait_limit_seconds=2,
    )
    with live_run(config, tmp_path / "run") as run:
        run.send(USERS, *[record("users", {"id": i, "v": f"a{i}"}) for i in range(100)])
        run.send({"type": "STATE", "value": "a"})
        run.wait_for_state("a", timeout=30)
        # A batch is open, its COPY under way, when the primary goes.
        run.send(*[record("users", {"id": i, "v": f"b{i}"}) for i in range(80, 110)])
        run.wait_until_idle()
        wait_replayed(primary, standby)
        primary.pg_ctl("stop", "-m", "fast")
        promote(standby)
        run.send(*[record("users", {"id": i, "v": f"b{i}"}) for i in range(110, 200)])
        run.send({"type": "STATE", "value": "b"})
        run.wait_for_state("b", timeout=60)
        assert run.finish() == 0, run.stderr
        assert "lost the connection" in run.stderr
    assert [json.loads(line) for line in run.stdout] == ["a", "b"]
    with standby.admin_connect(database.dbname) as conn:
        rows = conn.execute("SELECT id, v FROM tap.users ORDER BY id").fetchall()
        expected = [(i, f"a{i}") for i in range(80)] + [(i, f"b{i}") for i in range(80, 200)]
        assert rows == expected
        if layout == "raw_and_final":
            raw = conn.execute(
                "SELECT count(*), count(DISTINCT _airbyte_raw_id) FROM"
                " airbyte_internal.tap_raw__stream_users"
            ).fetchone()
            assert raw == (220, 220)


def test_a_standby_alone_is_refused_before_input(
    pair: tuple[PostgresServer, PostgresServer], tmp_path: Path
) -> None:
    primary, standby = pair
    database = PgDatabase.create(primary)
    wait_replayed(primary, standby)
    run = run_target(
        _config(database, [standby], jdbc_url_params="connectTimeout=5"),
        messages(USERS, record("users", {"id": 1, "v": "x"}), {"type": "STATE", "value": 1}),
        tmp_path / "run",
    )
    assert run.returncode == 1
    assert run.stdout == ""
    (error,) = run.error_lines()
    assert f"127.0.0.1:{standby.port}" in error, error
    assert "hot standby" in error, error
    assert "targetServerType=primary" in error, error
    assert "Traceback" not in run.stderr
    with primary.admin_connect(database.dbname) as conn:
        assert tables_in(conn, "tap") == []


def test_a_read_only_role_is_refused_before_input(pg_db: PgDatabase, tmp_path: Path) -> None:
    pg_db.admin().execute(
        sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(
            sql.Identifier(pg_db.role.name)
        )
    )
    run = run_target(
        pg_db.config(schema="tap"),
        messages(USERS, record("users", {"id": 1, "v": "x"}), {"type": "STATE", "value": 1}),
        tmp_path / "run",
    )
    assert run.returncode == 1
    assert run.stdout == ""
    (error,) = run.error_lines()
    assert "default_transaction_read_only" in error, error
    assert "Traceback" not in run.stderr
    assert tables_in(pg_db.admin(), "tap") == []
