"""SPEC §6.1/§6.3/§9 with Singer table versions, as found by the kill-point sweep and the model
test: a versioned full refresh swapped in just before the run died (ahead of its next STATE) is
continued, not replaced, by the records the tap sends again; and a record without a table version
is ranked against a versioned row by its cursor (§6.3), not by version 0 < v.

Issue 25: the STATE after a full refresh's last record waits for the replacement, and is never
emitted when the replacement fails (a reader's open transaction holding ACCESS SHARE on the table
past `lock_wait_seconds`); a stream that receives table versions is a full refresh whatever its
load method, so no reader sees two versions, during the load or after a killed one."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from servers import PgDatabase

from .targetrun import live_run, messages, record, run_target, schema_message

pytestmark = pytest.mark.integration

VERSION = 1717000000000
PROPERTIES: dict[str, Any] = {"id": {"type": "integer"}, "updated": {"type": ["integer", "null"]}}


def item(number: int, updated: int | None = None, version: int | None = VERSION) -> Any:
    message = record("items", {"id": number, "updated": updated}, "2024-06-01T00:00:00Z")
    if version is not None:
        message["version"] = version
    return message


def activate() -> dict[str, Any]:
    return {"type": "ACTIVATE_VERSION", "stream": "items", "version": VERSION}


def state(n: int) -> dict[str, Any]:
    return {"type": "STATE", "value": {"n": n}}


def ids(pg_db: PgDatabase) -> list[int]:
    return [i for (i,) in pg_db.admin().execute("SELECT id FROM tap.items ORDER BY id")]


@pytest.mark.parametrize("keys", [[], ["id"]], ids=["keyless", "keyed"])
def test_a_load_swapped_in_before_its_state_is_continued_by_the_resent_records(
    pg_db: PgDatabase, tmp_path: Path, keys: list[str]
) -> None:
    config = pg_db.config(schema="tap", load_method="overwrite", batch_size_rows=1)
    schema = schema_message("items", PROPERTIES, keys)
    died = run_target(
        config,
        messages(schema, item(1), item(2), state(2), item(3), activate()) + "not json\n",
        tmp_path / "1",
    )
    assert died.returncode == 1, died.stderr
    assert died.stdout.splitlines() == ['{"n": 2}']
    assert ids(pg_db) == [1, 2, 3]
    # The tap resumes from {"n": 2}: the rest of the version, then its ACTIVATE_VERSION.
    resumed = run_target(config, messages(schema, item(3), activate(), state(3)), tmp_path / "2")
    assert resumed.returncode == 0, resumed.stderr
    assert "continue the load already in tap.items" in resumed.stderr
    # Keyless streams are at-least-once: record 3 was committed after the last STATE.
    assert ids(pg_db) == ([1, 2, 3] if keys else [1, 2, 3, 3])


def test_a_resent_activate_version_alone_keeps_the_completed_load(
    pg_db: PgDatabase, tmp_path: Path
) -> None:
    config = pg_db.config(schema="tap", load_method="overwrite", batch_size_rows=1)
    schema = schema_message("items", PROPERTIES, ["id"])
    died = run_target(
        config, messages(schema, item(1), state(1), activate()) + "not json\n", tmp_path / "1"
    )
    assert died.returncode == 1, died.stderr
    resumed = run_target(config, messages(schema, activate(), state(2)), tmp_path / "2")
    assert resumed.returncode == 0, resumed.stderr
    assert ids(pg_db) == [1]


def test_a_record_without_a_version_is_ranked_by_its_cursor(
    pg_db: PgDatabase, tmp_path: Path
) -> None:
    schema = {**schema_message("items", PROPERTIES, ["id"]), "bookmark_properties": ["updated"]}
    first = run_target(
        pg_db.config(schema="tap", load_method="overwrite"),
        messages(schema, item(1, updated=None), activate()),
        tmp_path / "1",
    )
    assert first.returncode == 0, first.stderr
    second = run_target(
        pg_db.config(schema="tap"), messages(schema, item(1, 2, version=None)), tmp_path / "2"
    )
    assert second.returncode == 0, second.stderr
    rows = pg_db.admin().execute("SELECT id, updated FROM tap.items").fetchall()
    assert rows == [(1, 2)]


@contextmanager
def reading(pg_db: PgDatabase, table: str = "tap.items") -> Iterator[list[int]]:
    """Another session in an open transaction that read the table (a report query): it holds
    ACCESS SHARE on it until the transaction ends. Yields the ids it read."""
    with psycopg.connect(pg_db.server.admin_dsn(pg_db.dbname), autocommit=True) as reader:
        reader.execute("BEGIN")
        seen = [i for (i,) in reader.execute(f"SELECT id FROM {table} ORDER BY id")]  # noqa: S608
        held = reader.execute(
            "SELECT mode FROM pg_locks WHERE pid = pg_backend_pid() AND relation = %s::regclass",
            (table,),
        ).fetchall()
        assert held == [("AccessShareLock",)], held
        try:
            yield seen
        finally:
            reader.execute("ROLLBACK")


LAYOUTS = ["raw_and_final", "direct"]
#: The failed run's input after the SCHEMA (each a full refresh whose replacement the reader
#: blocks), the STATEs it may emit, what the tap sends again from the last of them, and the ids
#: the table then holds: a load of a table version is continued by the re-sent records, which
#: a keyless stream takes again (at-least-once after the last emitted STATE, §6.1).
BLOCKED: dict[str, tuple[list[Any], list[int], list[Any], list[int]]] = {
    # An overwrite without table versions: every STATE after a record waits for the swap, and
    # the re-run's load starts afresh.
    "overwrite": (
        [item(2, version=None), state(1), item(3, version=None), state(2)],
        [],
        [item(2, version=None), state(1), item(3, version=None), state(2)],
        [2, 3],
    ),
    # ACTIVATE_VERSION before the records, applied at the end of input.
    "activate at end of input": (
        [activate(), item(2), item(3), state(2)],
        [],
        [activate(), item(2), item(3), state(2)],
        [2, 2, 3, 3],
    ),
    # ACTIVATE_VERSION after the records: the STATE between them waits for it; the one after a
    # record that more records of the load followed is safe (the next run continues the load).
    "activate after the records": (
        [item(2), state(1), item(3), state(2), activate()],
        [1],
        [item(3), state(2), activate()],
        [2, 3, 3],
    ),
}


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("case", list(BLOCKED))
@pytest.mark.parametrize("batch_size_rows", [1, 1000])
def test_no_state_after_a_full_refresh_whose_replacement_failed(
    pg_db: PgDatabase, tmp_path: Path, layout: str, case: str, batch_size_rows: int
) -> None:
    """§6.1 (issue 25, defect 3): a reader holds ACCESS SHARE on the final table past
    lock_wait_seconds, so the swap gives up: the run emits no STATE after the load's last
    record, the table still holds the old load, and the re-run from the last emitted STATE
    completes the load."""
    settings = {"table_layout": layout, "load_method": "overwrite"}
    config = pg_db.config(schema="tap", **settings)
    schema = schema_message("items", PROPERTIES, [])
    first = run_target(config, messages(schema, item(1, version=None)), tmp_path / "1")
    assert first.returncode == 0, first.stderr
    sent, emitted, again, expected = BLOCKED[case]
    with reading(pg_db) as seen:
        blocked = run_target(
            {**config, "lock_wait_seconds": 2, "batch_size_rows": batch_size_rows},
            messages(schema, *sent),
            tmp_path / "2",
        )
        assert seen == [1]
    assert blocked.returncode == 1, blocked.stderr
    assert "Traceback" not in blocked.stderr
    assert "Waited 2 s (lock_wait_seconds) for a lock on tap.items" in blocked.stderr
    assert blocked.stdout.splitlines() == [f'{{"n": {n}}}' for n in emitted], blocked.stderr
    assert ids(pg_db) == [1]
    # The tap runs again from the last STATE the target emitted.
    resumed = run_target(config, messages(schema, *again), tmp_path / "3")
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.splitlines() == ['{"n": 2}'], resumed.stderr
    assert ids(pg_db) == expected


def items_of(pg_db: PgDatabase) -> list[tuple[int, int]]:
    return (
        pg_db.admin()
        .execute(
            "SELECT id, _airbyte_generation_id FROM tap.items ORDER BY id, _airbyte_generation_id"
        )
        .fetchall()
    )


def loaded(version: int, *numbers: int) -> list[Any]:
    return [{**item(number, version=None), "version": version} for number in numbers]


def activate_version(version: int) -> dict[str, Any]:
    return {**activate(), "version": version}


V1, V2 = VERSION, VERSION + 1


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("keys", [[], ["id"]], ids=["keyless", "keyed"])
def test_a_reload_of_an_append_stream_never_shows_two_versions(
    pg_db: PgDatabase, tmp_path: Path, layout: str, keys: list[str]
) -> None:
    """§6.1 (issue 25, defect 2): ACTIVATE_VERSION on a stream of the default load method (what
    SDK taps send for FULL_TABLE streams) makes it a full refresh: while version 2 loads, a
    reader sees version 1 alone; after a kill -9 it still does; the re-run from the last
    emitted STATE completes version 2, which then replaces version 1 whole."""
    config = pg_db.config(schema="tap", table_layout=layout, batch_size_rows=1)
    schema = schema_message("items", PROPERTIES, keys)
    first = run_target(
        config,
        messages(schema, activate_version(V1), *loaded(V1, 1, 2, 3), activate_version(V1)),
        tmp_path / "1",
    )
    assert first.returncode == 0, first.stderr
    assert items_of(pg_db) == [(1, V1), (2, V1), (3, V1)]
    with live_run(config, tmp_path / "2") as live:
        live.send(schema, *loaded(V2, 11, 12), state(1), *loaded(V2, 13), state(2))
        live.wait_for_state({"n": 1})
        live.wait_until_idle()
        with reading(pg_db) as seen:
            assert seen == [1, 2, 3]
        assert items_of(pg_db) == [(1, V1), (2, V1), (3, V1)]
        os.kill(live.process.pid, signal.SIGKILL)
        assert live.process.wait(timeout=30) == -signal.SIGKILL
        assert live.stdout == ['{"n": 1}'], live.stderr
    assert items_of(pg_db) == [(1, V1), (2, V1), (3, V1)]
    # The tap resumes from {"n": 1}: the rest of version 2, then its ACTIVATE_VERSION.
    resumed = run_target(
        config, messages(schema, *loaded(V2, 13), activate_version(V2), state(3)), tmp_path / "3"
    )
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.splitlines() == ['{"n": 3}'], resumed.stderr
    # A keyless stream is at-least-once after the last emitted STATE: record 13 came twice.
    again = [] if keys else [(13, V2)]
    assert items_of(pg_db) == [(11, V2), (12, V2), (13, V2), *again]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("method", ["append", "append-dedup"])
def test_records_without_a_version_before_the_first_version_are_replaced_by_its_load(
    pg_db: PgDatabase, tmp_path: Path, layout: str, method: str
) -> None:
    """§6.1, decided for issue 25: records without a version, committed (and their STATE
    emitted) before the stream's first versioned record in the same run, stay in the live table
    while the version loads, and the version's load replaces them when its ACTIVATE_VERSION
    comes, as it replaces every other row."""
    config = pg_db.config(schema="tap", table_layout=layout, load_method=method, batch_size_rows=1)
    schema = schema_message("items", PROPERTIES, ["id"])
    first = run_target(config, messages(schema, item(1, version=None)), tmp_path / "1")
    assert first.returncode == 0, first.stderr
    with live_run(config, tmp_path / "2") as live:
        live.send(schema, item(2, version=None), item(3, version=None), state(1))
        live.wait_for_state({"n": 1})
        live.send(*loaded(V2, 3, 4), state(2), *loaded(V2, 5))
        live.wait_until_idle()
        assert items_of(pg_db) == [(1, 0), (2, 0), (3, 0)]
        live.send(activate_version(V2), state(3))
        assert live.finish() == 0, live.stderr
        assert live.stdout == ['{"n": 1}', '{"n": 2}', '{"n": 3}'], live.stderr
    assert items_of(pg_db) == [(3, V2), (4, V2), (5, V2)]
    if layout == "raw_and_final":
        raw = pg_db.admin().execute(
            "SELECT _airbyte_data->>'id', _airbyte_generation_id"
            " FROM airbyte_internal.tap_raw__stream_items ORDER BY 1"
        )
        assert raw.fetchall() == [("3", V2), ("4", V2), ("5", V2)]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_first_version_inside_a_batch_commits_the_records_before_it_first(
    pg_db: PgDatabase, tmp_path: Path, layout: str
) -> None:
    """The same as above with the first versioned record in the middle of a batch: the
    records without a version staged before it are committed to the live table, their STATE
    is emitted once they are, and the version's load replaces them at its ACTIVATE_VERSION."""
    config = pg_db.config(schema="tap", table_layout=layout, batch_size_rows=1000)
    schema = schema_message("items", PROPERTIES, [])
    done = run_target(
        config,
        messages(
            schema,
            item(2, version=None),
            item(3, version=None),
            state(1),
            *loaded(V2, 3, 4),
            state(2),
            *loaded(V2, 5),
            activate_version(V2),
            state(3),
        ),
        tmp_path / "1",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ['{"n": 1}', '{"n": 2}', '{"n": 3}'], done.stderr
    assert "Stream items receives table versions" in done.stderr
    assert items_of(pg_db) == [(3, V2), (4, V2), (5, V2)]
