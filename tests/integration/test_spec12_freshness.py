"""SPEC §12, freshness and short transactions: a slow or stalled tap gets each STATE within
`batch_wait_limit_seconds` (+ 1 s) of sending it, with every record before it committed and
visible to other sessions by then, and no transaction of the run stays open while the input
is silent. Fast input still loads in full batches."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from servers import PgDatabase

from .targetrun import live_run, record, schema_message

pytestmark = pytest.mark.integration

LIMIT = 2
#: SPEC §12: a STATE is out at most the limit plus one second after it arrives.
LATEST = LIMIT + 1.0

LAYOUTS = ["raw_and_final", "direct"]
USERS = {"id": {"type": "integer"}, "name": {"type": "string"}}


def _config(pg_db: PgDatabase, layout: str, **extra: Any) -> dict[str, Any]:
    return {
        **pg_db.config(schema="tap"),
        "table_layout": layout,
        "batch_wait_limit_seconds": LIMIT,
        **extra,
    }


def _visible(admin: psycopg.Connection[Any], layout: str) -> list[tuple[Any, ...]]:
    """The final table's rows as another session sees them, and the raw table's ids."""
    rows = admin.execute("SELECT id, name FROM tap.users ORDER BY id").fetchall()
    if layout == "raw_and_final":
        raw = admin.execute(
            "SELECT (_airbyte_data->>'id')::int FROM airbyte_internal.tap_raw__stream_users"
            " ORDER BY 1"
        ).fetchall()
        assert [r[0] for r in raw] == [r[0] for r in rows]
    return rows


def _old_transactions(admin: psycopg.Connection[Any], role: str, older_than: float) -> list[Any]:
    """The loader's sessions whose transaction has been open longer than `older_than` s."""
    return admin.execute(
        "SELECT pid, state, left(query, 60), now() - xact_start FROM pg_stat_activity"
        " WHERE usename = %s AND xact_start < now() - make_interval(secs => %s)",
        (role, older_than),
    ).fetchall()


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_slow_tap_gets_each_state_within_the_limit(
    pg_db: PgDatabase, tmp_path: Path, layout: str
) -> None:
    """Six records, each followed by a STATE, 1.5 s apart, then six silent seconds with stdin
    open: each STATE comes within the limit, its records visible, no old transaction."""
    admin = pg_db.admin()
    with live_run(_config(pg_db, layout), tmp_path / "run") as run:
        run.send(schema_message("users", USERS, ["id"]))
        run.wait_until_idle()  # started, and the tables made: the clock starts now
        sent: dict[str, float] = {}
        for i in range(1, 7):
            run.send(record("users", {"id": i, "name": f"u{i}"}), {"type": "STATE", "value": i})
            sent[json.dumps(i)] = time.monotonic()
            run.wait_for_state(i, timeout=LATEST + 2)
            late = run.arrivals[json.dumps(i)] - sent[json.dumps(i)]
            assert late <= LATEST, f"STATE {i} came {late:.2f} s after it was sent"
            assert _visible(admin, layout) == [(n, f"u{n}") for n in range(1, i + 1)]
            time.sleep(1.5)
            assert _old_transactions(admin, pg_db.role.name, LATEST) == []
        time.sleep(6)
        assert _old_transactions(admin, pg_db.role.name, LATEST) == []
        assert run.finish() == 0, run.stderr
    assert run.stdout == [json.dumps(i) for i in range(1, 7)]
    assert _visible(admin, layout) == [(n, f"u{n}") for n in range(1, 7)]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_tap_that_never_pauses_long_still_gets_its_states(
    pg_db: PgDatabase, tmp_path: Path, layout: str
) -> None:
    """A record and a STATE every 0.25 s for 6 s: the input is never silent for the limit,
    yet every STATE comes within it (the deadline is checked between reads, not only when
    the input stops)."""
    admin = pg_db.admin()
    with live_run(_config(pg_db, layout), tmp_path / "run") as run:
        run.send(schema_message("users", USERS, ["id"]))
        run.wait_until_idle()  # started, and the tables made: the clock starts now
        sent: dict[str, float] = {}
        for i in range(1, 25):
            run.send(record("users", {"id": i, "name": f"u{i}"}), {"type": "STATE", "value": i})
            sent[json.dumps(i)] = time.monotonic()
            time.sleep(0.25)
        run.wait_for_state(24, timeout=LATEST + 2)
        for text, at in sent.items():
            if text in run.arrivals:
                late = run.arrivals[text] - at
                assert late <= LATEST, f"STATE {text} came {late:.2f} s after it was sent"
        # States are emitted when their records commit: every few seconds, not per record.
        emitted = [int(line) for line in run.stdout]
        assert emitted == sorted(emitted)
        assert 2 <= len(emitted) <= 12, emitted
        assert _old_transactions(admin, pg_db.role.name, LATEST) == []
        assert run.finish() == 0, run.stderr
    assert _visible(admin, layout) == [(n, f"u{n}") for n in range(1, 25)]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_stalled_tap_mid_line_keeps_what_came_before(
    pg_db: PgDatabase, tmp_path: Path, layout: str
) -> None:
    """A tap that stalls in the middle of a line: what came before it is committed and its
    STATE emitted within the limit; the line loads once it is complete."""
    admin = pg_db.admin()
    with live_run(_config(pg_db, layout), tmp_path / "run") as run:
        run.send(schema_message("users", USERS, ["id"]))
        run.wait_until_idle()
        run.send(record("users", {"id": 1, "name": "one"}), {"type": "STATE", "value": "one"})
        started = time.monotonic()
        assert run.process.stdin is not None
        run.process.stdin.write('{"type": "RECORD", "stream": "users", "record": {"id": 2, ')
        run.process.stdin.flush()
        run.wait_for_state("one", timeout=LATEST + 2)
        assert run.arrivals[json.dumps("one")] - started <= LATEST
        assert _visible(admin, layout) == [(1, "one")]
        time.sleep(LIMIT + 0.5)
        assert _old_transactions(admin, pg_db.role.name, LATEST) == []
        run.process.stdin.write('"name": "two"}}\n{"type": "STATE", "value": "two"}\n')
        run.process.stdin.flush()
        run.wait_for_state("two", timeout=LATEST + 2)
        assert _visible(admin, layout) == [(1, "one"), (2, "two")]
        assert run.finish() == 0, run.stderr


@pytest.mark.parametrize("layout", LAYOUTS)
def test_fast_input_still_loads_in_full_batches(
    pg_db: PgDatabase, tmp_path: Path, layout: str
) -> None:
    """50,000 records sent at once with a STATE every 1,000: batches of 20,000 commit, so
    the STATEs emitted are the last before each full batch's commit (19,000, 39,000), the one
    right after it, and the last: not one per 1,000."""
    admin = pg_db.admin()
    items: list[Any] = [schema_message("users", USERS, ["id"])]
    for i in range(1, 50_001):
        items.append(record("users", {"id": i, "name": f"u{i}"}))
        if i % 1_000 == 0:
            items.append({"type": "STATE", "value": i})
    with live_run(_config(pg_db, layout, batch_wait_limit_seconds=30), tmp_path / "run") as run:
        run.send(*items)
        assert run.finish() == 0, run.stderr
    assert run.stdout == ["19000", "20000", "39000", "40000", "50000"]
    count = admin.execute("SELECT count(*), count(DISTINCT id) FROM tap.users").fetchone()
    assert count == (50_000, 50_000)
