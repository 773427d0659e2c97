"""SPEC §12 with a real PgBouncer (Debian's) in front of the server: every behaviour holds in
session and transaction pooling with no extra setting (nothing relies on server-side
prepared statements or session state between transactions), two runs of the same streams at
once stay correct, lock waits are still reported and bounded, a restarted pooler is ridden
out, and statement pooling is refused before loading. Role limits a DBA sets never fail a
run, straight to the server or through the pooler."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from poolers import PooledDatabase, pooled
from psycopg import sql
from servers import PgDatabase

from .targetrun import live_run, messages, record, run_target, schema_message, tables_in

pytestmark = pytest.mark.integration

LAYOUTS = ["raw_and_final", "direct"]


@pytest.fixture(params=["session", "transaction"])
def bounced(request: pytest.FixtureRequest, pg_db: PgDatabase) -> Iterator[PooledDatabase]:
    """The test's database behind PgBouncer in each pooling mode that can load."""
    with pooled(pg_db, request.param, pool_size=20) as database:
        yield database


def _evolving_load(run: int) -> str:
    """Three streams and their changes across runs: a dedup stream that gains a column and
    widens one, an append stream, an overwrite stream; each run sends 300 records of each."""
    users = {"id": {"type": "integer"}, "n": {"type": "integer"}, "at": {"type": "string"}}
    if run > 0:
        users = {**users, "n": {"type": "number"}, "extra": {"type": "string"}}
    items: list[Any] = [
        schema_message("users", users, ["id"]),
        schema_message("events", {"id": {"type": "integer"}, "v": {"type": "string"}}),
        schema_message("snap", {"id": {"type": "integer"}, "v": {"type": "string"}}),
    ]
    for i in range(300):
        user = {"id": i % 200, "n": i * (run + 1), "at": f"2024-01-{1 + i % 28:02d}"}
        if run > 0:
            user = {**user, "n": i + 0.5, "extra": f"x{i}"}
        items.append(record("users", user))
        items.append(record("events", {"id": i, "v": f"r{run}e{i}"}))
        items.append(record("snap", {"id": i, "v": f"r{run}s{i}"}))
        if i % 100 == 99:
            items.append({"type": "STATE", "value": {"run": run, "i": i}})
    return messages(*items)


def _contents(conn: psycopg.Connection[Any], layout: str) -> dict[str, list[Any]]:
    """Every final (and raw) table's rows, without the columns that differ between runs
    (ids, times, sync ids)."""
    found: dict[str, list[Any]] = {}
    for table in tables_in(conn, "tap"):
        columns = [
            name
            for (name,) in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = 'tap'"
                " AND table_name = %s AND column_name NOT LIKE '\\_airbyte\\_%%'"
                " ORDER BY ordinal_position",
                (table,),
            )
        ]
        listed = sql.SQL(", ").join(map(sql.Identifier, columns))
        query = sql.SQL("SELECT {} FROM {} ORDER BY {}").format(
            listed, sql.Identifier("tap", table), listed
        )
        found[table] = [*conn.execute(query).fetchall(), tuple(columns)]
    if layout == "raw_and_final":
        found["raw"] = conn.execute(
            "SELECT c.relname, count(*) FROM pg_class c JOIN pg_namespace n"
            " ON n.oid = c.relnamespace WHERE n.nspname = 'airbyte_internal' AND c.relkind = 'r'"
            " GROUP BY 1 ORDER BY 1"
        ).fetchall()
    return found


@pytest.mark.parametrize("layout", LAYOUTS)
def test_three_runs_through_pgbouncer_load_as_they_do_straight(
    bounced: PooledDatabase, tmp_path: Path, layout: str
) -> None:
    """The same three runs (dedup, append, overwrite, a new column, a widened one) through
    PgBouncer and straight to the server leave identical tables, row by row."""
    with PgDatabase.fresh(bounced.server) as straight:
        for run in range(3):
            options = {
                "schema": "tap",
                "table_layout": layout,
                "stream_load_methods": {"snap": "overwrite"},
                "batch_size_rows": 70,
            }
            direct = run_target(straight.config(**options), _evolving_load(run), tmp_path / "d")
            through = run_target(bounced.config(**options), _evolving_load(run), tmp_path / "p")
            assert direct.returncode == 0, direct.stderr
            assert through.returncode == 0, through.stderr
            assert through.stdout == direct.stdout
            assert "pooler" in through.stderr
        expected = _contents(straight.admin(), layout)
    got = _contents(bounced.admin(), layout)
    assert got == expected
    assert len(got["users"]) == 201  # 200 keys, and the column names
    assert len(got["snap"]) == 301
    assert len(got["events"]) == 901


@pytest.mark.parametrize("layout", LAYOUTS)
def test_two_runs_of_thirty_dedup_streams_at_once_through_transaction_pooling(
    pg_db: PgDatabase, tmp_path: Path, layout: str
) -> None:
    """Two runs of the same 30 dedup streams at once through transaction pooling: both
    succeed (the stream lock holds through the pooler; no prepared statement clashes) and
    every table holds each key once, with the winning values."""
    streams = [f"s{n}" for n in range(30)]

    def load(tag: int) -> str:
        items: list[Any] = [
            schema_message(s, {"id": {"type": "integer"}, "v": {"type": "integer"}}, ["id"])
            for s in streams
        ]
        for i in range(100):
            items += [record(s, {"id": i, "v": i * 10 + tag}) for s in streams]
        return messages(*items, {"type": "STATE", "value": tag})

    with pooled(pg_db, "transaction", pool_size=20) as database:
        config = database.config(schema="tap", table_layout=layout, batch_size_rows=40)
        with (
            live_run(config, tmp_path / "a") as first,
            live_run(config, tmp_path / "b") as second,
        ):
            first.send(load(1))
            # The second run waits for the first's stream locks and stops reading: feed it
            # from a thread, so the first can be given its end of input meanwhile.
            feeding = threading.Thread(target=second.send, args=(load(2),))
            feeding.start()
            assert first.finish() == 0, first.stderr
            feeding.join(timeout=120)
            assert second.finish() == 0, second.stderr
        admin = pg_db.admin()
        for stream in streams:
            rows = admin.execute(
                sql.SQL("SELECT id, v FROM {} ORDER BY id").format(sql.Identifier("tap", stream))
            ).fetchall()
            assert [row[0] for row in rows] == list(range(100)), stream
            assert {row[1] - row[0] * 10 for row in rows} <= {1, 2}, stream


def test_statement_pooling_is_refused_before_loading(pg_db: PgDatabase, tmp_path: Path) -> None:
    with pooled(pg_db, "statement") as database:
        run = run_target(
            database.config(schema="tap"),
            messages(
                schema_message("users", {"id": {"type": "integer"}}, ["id"]),
                record("users", {"id": 1}),
                {"type": "STATE", "value": 1},
            ),
            tmp_path / "run",
        )
    assert run.returncode == 1
    assert run.stdout == ""
    (error,) = run.error_lines()
    assert "statement mode" in error, error
    assert "session or transaction mode" in error, error
    assert "Traceback" not in run.stderr
    assert tables_in(pg_db.admin(), "tap") == []


def test_a_lock_wait_through_transaction_pooling_is_reported_and_bounded(
    pg_db: PgDatabase, tmp_path: Path
) -> None:
    """A reader holding the final table in ACCESS EXCLUSIVE while the run must change it:
    through the pooler the run still names the session holding the lock (its real pid) and
    gives up after lock_wait_seconds with one sentence."""
    schema = schema_message("users", {"id": {"type": "integer"}}, ["id"])
    with pooled(pg_db, "transaction", pool_size=20) as database:
        config = database.config(schema="tap", lock_wait_seconds=3)
        first = run_target(config, messages(schema, record("users", {"id": 1})), tmp_path / "1")
        assert first.returncode == 0, first.stderr
        holder = pg_db.admin()
        holder.autocommit = False
        holder.execute("SET application_name = 'report-holder'")
        holder.execute("LOCK TABLE tap.users IN ACCESS EXCLUSIVE MODE")
        holder_pid = holder.info.backend_pid
        started = time.monotonic()
        second = run_target(config, messages(schema, record("users", {"id": 2})), tmp_path / "2")
        took = time.monotonic() - started
        holder.rollback()
    assert second.returncode == 1, second.stderr
    (error,) = second.error_lines()
    assert f"pid {holder_pid}" in error, error
    assert "report-holder" in error, error
    assert "lock_wait_seconds" in error
    assert took < 3 + 10
    assert pg_db.admin().execute("SELECT id FROM tap.users").fetchall() == [(1,)]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_pooler_restarted_mid_run_is_ridden_out(
    pg_db: PgDatabase, tmp_path: Path, layout: str
) -> None:
    """PgBouncer killed and started again while a run loads: the run reconnects, loses
    nothing, duplicates no key, and emits STATE only for committed records."""
    schema = schema_message("users", {"id": {"type": "integer"}, "v": {"type": "string"}}, ["id"])
    with pooled(pg_db, "transaction", pool_size=20) as database:
        config = database.config(
            schema="tap", table_layout=layout, batch_size_rows=50, batch_wait_limit_seconds=3
        )
        with live_run(config, tmp_path / "run") as run:
            run.send(schema, *[record("users", {"id": i, "v": f"a{i}"}) for i in range(120)])
            run.send({"type": "STATE", "value": "a"})
            run.wait_for_state("a", timeout=60)
            run.send(*[record("users", {"id": i, "v": f"b{i}"}) for i in range(100, 220)])
            database.bouncer.restart()
            run.send(*[record("users", {"id": i, "v": f"c{i}"}) for i in range(200, 300)])
            run.send({"type": "STATE", "value": "c"})
            assert run.finish() == 0, run.stderr
    assert [json.loads(line) for line in run.stdout] == ["a", "c"]
    rows = pg_db.admin().execute("SELECT id, v FROM tap.users ORDER BY id").fetchall()
    expected = {i: f"a{i}" for i in range(100)}
    expected |= {i: f"b{i}" for i in range(100, 200)}
    expected |= {i: f"c{i}" for i in range(200, 300)}
    assert rows == sorted(expected.items())
