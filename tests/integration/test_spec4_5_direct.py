"""SPEC §4.5: the direct layout (`table_layout: direct`) writes each stream's typed final table and
no raw table, and every other behaviour holds as in the default layout.

Most scenarios are differential: the same input is loaded twice, into two databases, once with
`raw_and_final` and once with `direct`, and the final tables must agree row by row and column by
column (every column as text, but the raw id and the extraction time of records without
`time_extracted`, which differ by run), with the same STATE lines and errors. The scenarios cover
every load method, late and older records, hard and soft deletes (no resurrection of a deleted
key), ACTIVATE_VERSION, schema evolution, values typing NULLs, NUL characters and NaN, and bad
input. Beside them: the table's columns and types, no table in the raw schema, switching a stream
between layouts in both directions (nothing deleted, the leftover raw table named in the log),
and a run killed mid-batch resumed from its last STATE.
"""

from __future__ import annotations

import json
import os
import signal
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from servers import PgDatabase, PostgresServer

from .targetrun import (
    column_types,
    live_run,
    messages,
    record,
    run_target,
    schema_message,
    tables_in,
    wait_for_no_loader,
)

pytestmark = pytest.mark.integration

RAW_SCHEMA = "airbyte_internal"
PROPERTIES: dict[str, Any] = {
    "id": {"type": "integer"},
    "name": {"type": ["string", "null"]},
    "amount": {"type": ["number", "null"]},
    "at": {"type": ["string", "null"], "format": "date-time"},
    "tags": {"type": ["array", "null"]},
    "updated": {"type": ["integer", "null"]},
    "_ab_cdc_deleted_at": {"type": ["string", "null"]},
}


def user(n: int, updated: int | None = None, **extra: Any) -> dict[str, Any]:
    data = {"id": n, "name": f"user {n}", "amount": n + 0.25, "updated": updated, **extra}
    return record("users", data, f"2024-06-0{1 + n % 8}T00:00:00Z")


def state(n: int) -> dict[str, Any]:
    return {"type": "STATE", "value": {"n": n}}


def users_schema(keys: list[str] | None = None, **more: Any) -> dict[str, Any]:
    message = schema_message("users", {**PROPERTIES, **more}, ["id"] if keys is None else keys)
    message["bookmark_properties"] = ["updated"]
    return message


def final_rows(
    conn: psycopg.Connection[Any],
    schema: str,
    table: str,
    skip: tuple[str, ...] = ("_airbyte_raw_id",),
) -> list[tuple[Any, ...]]:
    """Every row as text, all columns but those of `skip` (by default the raw id), in a stable
    order."""
    columns = [name for name, _ in column_types(conn, schema, table) if name not in skip]
    selected = psycopg.sql.SQL(", ").join(
        psycopg.sql.SQL("{}::text").format(psycopg.sql.Identifier(c)) for c in columns
    )
    query = psycopg.sql.SQL("SELECT {} FROM {} ORDER BY 1, 2, 3, 4").format(
        selected, psycopg.sql.Identifier(schema, table)
    )
    rows = conn.execute(query).fetchall()
    meta = columns.index("_airbyte_meta")
    # sync_id names the run: it differs between the two runs.
    return [(*row[:meta], _without_sync_id(row[meta]), *row[meta + 1 :], columns) for row in rows]


def _without_sync_id(meta: str) -> Any:
    parsed = json.loads(meta)
    parsed.pop("sync_id", None)
    return parsed


SCENARIOS: dict[str, tuple[dict[str, Any], list[list[Any]]]] = {
    "dedup late records and hard deletes": (
        {},
        [
            [users_schema(), user(1, 5), user(2, 5), user(1, 3), state(1)],
            [users_schema(), user(2, 9, _ab_cdc_deleted_at="2024-06-09"), user(3, 1), state(2)],
            # An older record of the deleted key does not bring it back.
            [users_schema(), user(2, 4), user(3, 2), user(1, None), state(3)],
        ],
    ),
    "dedup soft deletes": (
        {"cdc_deletion_mode": "soft_delete"},
        [
            [users_schema(), user(1, 5), user(1, 6, _ab_cdc_deleted_at="x"), state(1)],
            [users_schema(), user(1, 4), user(2, 1), state(2)],
        ],
    ),
    "append": (
        {"load_method": "append"},
        [
            [users_schema([]), user(1), user(1), state(1)],
            [users_schema([]), user(2), state(2)],
        ],
    ),
    "overwrite with table versions": (
        {"load_method": "overwrite"},
        [
            [
                users_schema(),
                {"type": "ACTIVATE_VERSION", "stream": "users", "version": 7},
                {**user(1), "version": 7},
                {**user(2), "version": 7},
                {"type": "ACTIVATE_VERSION", "stream": "users", "version": 7},
                state(1),
            ],
            [
                users_schema(),
                {**user(3), "version": 8},
                {"type": "ACTIVATE_VERSION", "stream": "users", "version": 8},
                state(2),
            ],
        ],
    ),
    "overwrite without versions": (
        {"load_method": "overwrite"},
        [[users_schema(), user(1), user(2), state(1)], [users_schema(), user(3), state(2)]],
    ),
    "schema evolution and typing": (
        {"batch_size_rows": 2},
        [
            [
                users_schema(),
                user(1, 1, amount="not a number", at="2024-13-45"),
                user(2, 1, name="a\u0000b", tags=[1, {"k": "v"}]),
                user(3, 1, amount=float("nan")),
                state(1),
            ],
            [
                users_schema(extra={"type": ["integer", "null"]}),
                user(4, 1, extra=12),
                state(2),
            ],
            [
                # extra widens to a string; amount is removed from the schema.
                schema_message(
                    "users",
                    {
                        **{k: v for k, v in PROPERTIES.items() if k != "amount"},
                        "extra": {"type": ["string", "null"]},
                    },
                    ["id"],
                ),
                user(5, 1, extra="text"),
                user(1, 2, extra="again"),
                state(3),
            ],
        ],
    ),
    "stream maps": (
        {"stream_maps": {"users": {"name": "name.upper() if name else None", "tags": "__NULL__"}}},
        [[users_schema(), user(1, 1), user(2, 1, name=None), user(1, 2), state(1)]],
    ),
    "bad input keeps what came before": (
        {"batch_size_rows": 2},
        [[users_schema(), user(1), user(2), state(1), user(3), "not json"]],
    ),
}


def load_both(
    pg16: PostgresServer, tmp_path: Path, settings: dict[str, Any], runs: list[list[Any]]
) -> tuple[PgDatabase, PgDatabase, list[Any], list[Any]]:
    """Every run of `runs` into one database per layout; returns the databases and the
    (returncode, STATE lines, ERROR lines) of each run."""
    results: dict[str, list[Any]] = {"raw_and_final": [], "direct": []}
    databases = {}
    for layout in results:
        database = PgDatabase.create(pg16)
        databases[layout] = database
        for number, lines in enumerate(runs):
            config = database.config(schema="tap", table_layout=layout, **settings)
            done = run_target(config, messages(*lines), tmp_path / layout / str(number))
            assert "Traceback" not in done.stderr, done.stderr
            results[layout].append((done.returncode, done.stdout, done.error_lines()))
    return (
        databases["raw_and_final"],
        databases["direct"],
        results["raw_and_final"],
        results["direct"],
    )


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_direct_final_tables_equal_the_default_layouts(
    pg16: PostgresServer, tmp_path: Path, scenario: str
) -> None:
    settings, runs = SCENARIOS[scenario]
    default, direct, default_runs, direct_runs = load_both(pg16, tmp_path, settings, runs)
    try:
        assert direct_runs == default_runs
        if scenario == "bad input keeps what came before":
            assert direct_runs[0][0] == 1
            assert direct_runs[0][1].splitlines() == ['{"n": 1}']
        else:
            assert all(code == 0 for code, _, _ in direct_runs), direct_runs
        a, b = default.admin(), direct.admin()
        assert tables_in(a, "tap") == tables_in(b, "tap") == ["users"]
        assert column_types(b, "tap", "users") == column_types(a, "tap", "users")
        assert final_rows(b, "tap", "users") == final_rows(a, "tap", "users")
        assert final_rows(b, "tap", "users"), "the scenario loaded nothing"
        # No raw table in the direct layout; only a hard-delete stream's removed keys.
        removed_keys = [t for t in tables_in(b, RAW_SCHEMA) if t.endswith("_deletes")]
        assert tables_in(b, RAW_SCHEMA) == removed_keys
        assert tables_in(a, RAW_SCHEMA)
    finally:
        default.drop()
        direct.drop()


def test_direct_final_table_columns_and_rows(pg_db: PgDatabase, tmp_path: Path) -> None:
    """The destination's direct-load columns: the properties, then the four `_airbyte_`
    columns (no `_airbyte_loaded_at`), typed by §4.3; the values typing NULLed are in
    `_airbyte_meta`."""
    config = pg_db.config(schema="tap", table_layout="direct")
    done = run_target(
        config,
        messages(users_schema(), user(1, 1), user(2, 2, amount="x"), state(1)),
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ['{"n": 1}']
    conn = pg_db.admin()
    assert column_types(conn, "tap", "users") == [
        ("id", "bigint"),
        ("name", "character varying"),
        ("amount", "numeric"),
        ("at", "timestamp with time zone"),
        ("tags", "jsonb"),
        ("updated", "bigint"),
        ("_ab_cdc_deleted_at", "character varying"),
        ("_airbyte_raw_id", "character varying"),
        ("_airbyte_extracted_at", "timestamp with time zone"),
        ("_airbyte_meta", "jsonb"),
        ("_airbyte_generation_id", "bigint"),
    ]
    rows = conn.execute(
        "SELECT id, name, amount, _airbyte_extracted_at::text, _airbyte_meta,"
        " _airbyte_generation_id, _airbyte_raw_id FROM tap.users ORDER BY id"
    ).fetchall()
    assert [row[:4] for row in rows] == [
        (1, "user 1", Decimal("1.25"), "2024-06-02 00:00:00+00"),
        (2, "user 2", None, "2024-06-03 00:00:00+00"),
    ]
    assert rows[0][4]["changes"] == []
    assert rows[1][4]["changes"] == [
        {"field": "amount", "change": "NULLED", "reason": "DESTINATION_TYPECAST_ERROR"}
    ]
    assert all(row[5] == 0 for row in rows)
    assert len({row[6] for row in rows}) == 2
    # No raw table: the raw schema holds only the keys a hard delete removed (none yet).
    assert tables_in(conn, RAW_SCHEMA) == ["tap_raw__stream_users_deletes"]
    assert "raw table" not in done.stderr.split("done:")[-1]


def test_switching_layouts_keeps_the_final_table_and_leaves_the_raw_table(
    pg_db: PgDatabase, tmp_path: Path
) -> None:
    """default → direct → default: the final table is kept and deduplicated across the
    switches; the raw table the default layout made is left alone (and named in the log)
    while the layout is direct, and holds no raw rows of the direct run."""
    conn = pg_db.admin()
    first = run_target(
        pg_db.config(schema="tap"), messages(users_schema(), user(1, 1), state(1)), tmp_path / "1"
    )
    assert first.returncode == 0, first.stderr
    raw_table = "tap_raw__stream_users"
    assert tables_in(conn, RAW_SCHEMA) == [raw_table, f"{raw_table}_deletes"]
    second = run_target(
        pg_db.config(schema="tap", table_layout="direct"),
        messages(users_schema(), user(1, 2), user(2, 1), state(2)),
        tmp_path / "2",
    )
    assert second.returncode == 0, second.stderr
    assert f"raw table {RAW_SCHEMA}.{raw_table}" in second.stderr
    assert "is left alone" in second.stderr
    assert conn.execute(
        "SELECT count(*) FROM airbyte_internal.tap_raw__stream_users"
    ).fetchone() == (1,)
    third = run_target(
        pg_db.config(schema="tap"),
        messages(users_schema(), user(2, 2), user(3, 1), state(3)),
        tmp_path / "3",
    )
    assert third.returncode == 0, third.stderr
    assert conn.execute("SELECT id, updated FROM tap.users ORDER BY id").fetchall() == [
        (1, 2),
        (2, 2),
        (3, 1),
    ]
    raw_ids = conn.execute(
        "SELECT (_airbyte_data->>'id')::int FROM airbyte_internal.tap_raw__stream_users ORDER BY 1"
    ).fetchall()
    assert raw_ids == [(1,), (2,), (3,)]


def test_disable_type_dedupe_and_another_layout_are_refused(
    pg_db: PgDatabase, tmp_path: Path
) -> None:
    done = run_target(
        pg_db.config(schema="tap", table_layout="direct", disable_type_dedupe=True),
        messages(users_schema(), user(1)),
        tmp_path,
    )
    assert done.returncode == 1
    assert done.error_lines() == [
        "Setting `disable_type_dedupe` is true (raw tables only) while table_layout is direct:"
        " set only table_layout."
    ]
    assert tables_in(pg_db.admin(), "tap") == []


def test_a_killed_direct_run_resumes_from_its_last_state(pg_db: PgDatabase, tmp_path: Path) -> None:
    """SIGKILL mid-batch: the final table holds exactly the batches before the last STATE;
    the re-run from that STATE completes it with each key once."""
    config = pg_db.config(schema="tap", table_layout="direct", batch_size_rows=5)
    conn = pg_db.admin()
    with live_run(config, tmp_path / "killed") as live:
        live.send(users_schema(), *[user(n, 1) for n in range(1, 6)], state(5))
        live.wait_for_state({"n": 5})
        live.send(*[user(n, 1) for n in range(6, 9)])
        os.kill(live.process.pid, signal.SIGKILL)
        live.finish(timeout=60)
    wait_for_no_loader(conn, pg_db.role.name)
    assert conn.execute("SELECT id FROM tap.users ORDER BY id").fetchall() == [
        (n,) for n in range(1, 6)
    ]
    rerun = run_target(
        config,
        messages(users_schema(), *[user(n, 1) for n in range(6, 12)], state(11)),
        tmp_path / "rerun",
    )
    assert rerun.returncode == 0, rerun.stderr
    assert conn.execute("SELECT id FROM tap.users ORDER BY id").fetchall() == [
        (n,) for n in range(1, 12)
    ]


def test_batch_files_load_alike_in_both_layouts(pg16: PostgresServer, tmp_path: Path) -> None:
    """A BATCH message's records (a JSONL file, NUL characters and a late record included)
    land in a direct final table exactly as in the default layout's."""
    part = tmp_path / "part-1.jsonl"
    rows = [
        {"id": 1, "name": "a\u0000b", "updated": 2},
        {"id": 2, "name": "b", "updated": 1},
        {"id": 1, "name": "older", "updated": 1},
    ]
    part.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    batch = {
        "type": "BATCH",
        "stream": "users",
        "encoding": {"format": "jsonl", "compression": "none"},
        "manifest": [part.as_uri()],
    }
    runs = [[users_schema(), user(3, 1), batch, state(1)]]
    default, direct, default_runs, direct_runs = load_both(pg16, tmp_path, {}, runs)
    try:
        assert direct_runs == default_runs
        assert direct_runs[0][0] == 0, direct_runs
        a, b = default.admin(), direct.admin()
        # A file's records carry no time_extracted: their extraction time is when they were read.
        skip = ("_airbyte_raw_id", "_airbyte_extracted_at")
        assert final_rows(b, "tap", "users", skip) == final_rows(a, "tap", "users", skip)
        names = b.execute("SELECT id, name FROM tap.users ORDER BY id").fetchall()
        assert names == [(1, "ab"), (2, "b"), (3, "user 3")]
    finally:
        default.drop()
        direct.drop()


def test_streams_whose_raw_names_collide_keep_their_own_removed_keys(
    pg_db: PgDatabase, tmp_path: Path
) -> None:
    """`Users` and `users` have two final tables but one raw table name. In the direct layout
    no raw table claims the name, yet each stream must still remember its hard deletes apart:
    a delete of key 1 in `Users` must not hold back key 1 of `users`."""
    config = pg_db.config(schema="tap", table_layout="direct")
    properties = {"id": {"type": "integer"}, "_ab_cdc_deleted_at": {"type": ["string", "null"]}}
    upper, lower = (
        schema_message("Users", properties, ["id"]),
        schema_message("users", properties, ["id"]),
    )
    deleted = record("Users", {"id": 1, "_ab_cdc_deleted_at": "2024-06-02"}, "2024-06-02T00:00:00Z")
    first = run_target(
        config,
        messages(upper, record("Users", {"id": 1}, "2024-06-01T00:00:00Z"), deleted, state(1)),
        tmp_path / "1",
    )
    assert first.returncode == 0, first.stderr
    second = run_target(
        config,
        messages(lower, record("users", {"id": 1}, "2024-06-01T12:00:00Z"), state(2)),
        tmp_path / "2",
    )
    assert second.returncode == 0, second.stderr
    conn = pg_db.admin()
    assert conn.execute('SELECT id FROM tap."Users"').fetchall() == []
    assert conn.execute('SELECT id FROM tap."users"').fetchall() == [(1,)]
    assert tables_in(conn, RAW_SCHEMA) == [
        "tap_raw__stream_users_2_deletes",
        "tap_raw__stream_users_deletes",
    ]
