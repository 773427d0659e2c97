"""SPEC §6.1 (full refresh: `overwrite` and Singer ACTIVATE_VERSION) and §6.4 (namespaces), end
to end through the real CLI, checking final tables row by row and column by column."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from itertools import zip_longest
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row
from servers import PgDatabase

from .targetrun import (
    Run,
    column_types,
    live_run,
    messages,
    raw_rows,
    run_target,
    schema_message,
    tables_in,
)

pytestmark = pytest.mark.integration

SCHEMA = "tap_data"
RAW_SCHEMA = "airbyte_internal"
RAW_USERS = "tap_data_raw__stream_users"
UTC = timezone.utc
BASE_TIME = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
VERSION_1 = 1717000000000
VERSION_2 = 1717000100000
VERSION_3 = 1717000200000
VERSION_4 = 1717000300000

USER_PROPERTIES: dict[str, Any] = {
    "id": {"type": "integer"},
    "name": {"type": ["string", "null"]},
    "amount": {"type": "number"},
    "active": {"type": "boolean"},
}
#: A users final table as `information_schema` shows it (SPEC §4.2, types by §4.3).
USER_COLUMNS = [
    ("id", "bigint"),
    ("name", "character varying"),
    ("amount", "numeric"),
    ("active", "boolean"),
    ("_airbyte_raw_id", "character varying"),
    ("_airbyte_extracted_at", "timestamp with time zone"),
    ("_airbyte_meta", "jsonb"),
    ("_airbyte_generation_id", "bigint"),
]


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class User:
    """One record sent to a users-like stream, and what its final row must hold.

    `name` is `<stream>:<id>:<tag>`, so every row tells which stream and which run it came from.
    `version` is the message-level Singer version sent (None: no version); `generation` is the
    `_airbyte_generation_id` expected for it.
    """

    stream: str
    id: int
    tag: str
    amount: float
    active: bool
    minute: int
    version: int | None = None
    generation: int = 0
    #: A value for the `email` property, which only a later SCHEMA declares (None: not sent).
    email: str | None = None

    @property
    def name(self) -> str:
        return f"{self.stream}:{self.id}:{self.tag}"

    @property
    def extracted_at(self) -> datetime:
        return BASE_TIME + timedelta(minutes=self.minute)

    def data(self) -> dict[str, Any]:
        """The record as sent (and as the raw table must keep it)."""
        data: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "amount": self.amount,
            "active": self.active,
        }
        if self.email is not None:
            data["email"] = self.email
        return data

    def message(self) -> dict[str, Any]:
        message: dict[str, Any] = {
            "type": "RECORD",
            "stream": self.stream,
            "record": self.data(),
            "time_extracted": self.extracted_at.isoformat().replace("+00:00", "Z"),
        }
        if self.version is not None:
            message["version"] = self.version
        return message


def user(
    id_: int,
    tag: str,
    minute: int,
    *,
    stream: str = "users",
    version: int | None = None,
    generation: int | None = None,
    email: str | None = None,
) -> User:
    """A record with distinct, exactly representable values derived from its id and tag."""
    return User(
        stream=stream,
        id=id_,
        tag=tag,
        amount=id_ * 10 + 0.25 + len(tag) / 4,  # x.25, x.5, x.75, …: exact in binary and text
        active=(id_ + len(tag)) % 2 == 0,
        minute=minute,
        version=version,
        generation=(version or 0) if generation is None else generation,
        email=email,
    )


def users_schema(stream: str = "users", keys: list[str] | None = None) -> dict[str, Any]:
    return schema_message(stream, USER_PROPERTIES, keys)


def activate(version: int, stream: str = "users") -> dict[str, Any]:
    return {"type": "ACTIVATE_VERSION", "stream": stream, "version": version}


def state(n: int) -> dict[str, Any]:
    return {"type": "STATE", "value": {"n": n}}


def lines(*items: dict[str, Any] | str | User) -> str:
    return messages(*(item.message() if isinstance(item, User) else item for item in items))


# --------------------------------------------------------------------------- running


def load(config: dict[str, Any], workdir: Path, *items: dict[str, Any] | str | User) -> Run:
    """Run the target and insist it succeeded."""
    run = run_target(config, lines(*items), workdir)
    assert run.returncode == 0, run.stderr
    return run


def emitted_states(stdout: str | list[str]) -> list[Any]:
    text_lines = stdout.splitlines() if isinstance(stdout, str) else stdout
    return [json.loads(line) for line in text_lines if line.strip()]


def reader(pg_db: PgDatabase) -> psycopg.Connection[Any]:
    """A superuser connection whose reads fail after 10 s instead of waiting on a lock."""
    conn = pg_db.admin()
    conn.execute("SET statement_timeout = '10s'")
    return conn


# --------------------------------------------------------------------------- reading back


def schema_exists(conn: psycopg.Connection[Any], schema: str) -> bool:
    row = conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone()
    assert row is not None
    return bool(row[0])


def final_rows(conn: psycopg.Connection[Any], schema: str, table: str) -> list[dict[str, Any]]:
    """Every row of a final table, by id, then extraction time, then raw id."""
    with conn.cursor(row_factory=dict_row) as cursor:
        cursor.execute(
            sql.SQL("SELECT * FROM {} ORDER BY id, _airbyte_extracted_at, _airbyte_raw_id").format(
                sql.Identifier(schema, table)
            )
        )
        return cursor.fetchall()


def table_oid(conn: psycopg.Connection[Any], schema: str, table: str) -> int:
    row = conn.execute(
        "SELECT %s::regclass::oid", (sql.Identifier(schema, table).as_string(conn),)
    ).fetchone()
    assert row is not None
    return int(row[0])


def assert_same(actual: Any, expected: Any, where: str) -> None:
    """Equal and of the same Python type (and equally time zone aware)."""
    assert type(actual) is type(expected), f"{where}: {actual!r} is not like {expected!r}"
    assert actual == expected, f"{where}: {actual!r} != {expected!r}"
    if isinstance(expected, datetime):
        assert (actual.tzinfo is None) == (expected.tzinfo is None), where


def assert_final(
    conn: psycopg.Connection[Any],
    expected: list[User],
    *,
    schema: str = SCHEMA,
    table: str = "users",
    raw_table: str | None = RAW_USERS,
    with_email: bool = False,
) -> list[dict[str, Any]]:
    """The final table holds exactly `expected` (ordered by id, then extraction time), column by
    column, with exact values and types. With `raw_table`, every row's `_airbyte_raw_id` names
    the raw row of that record, whose `_airbyte_*` values the final row repeats. `with_email`:
    the table also has the later `email` column, at the end (SPEC §4.2, §7)."""
    where = f"{schema}.{table}"
    layout = USER_COLUMNS + ([("email", "character varying")] if with_email else [])
    assert column_types(conn, schema, table) == layout, where
    rows = final_rows(conn, schema, table)
    assert [(row["id"], row["name"]) for row in rows] == [(u.id, u.name) for u in expected], where
    raw = {row[0]: row for row in raw_rows(conn, raw_table)} if raw_table else {}
    for row, want in zip(rows, expected, strict=True):
        at = f"{where} row {want.name}"
        assert list(row) == [name for name, _ in layout], at
        if with_email:
            assert_same(row["email"], want.email, f"{at} email")
        assert_same(row["id"], want.id, f"{at} id")
        assert_same(row["name"], want.name, f"{at} name")
        assert_same(row["amount"], Decimal(repr(want.amount)), f"{at} amount")
        assert_same(row["active"], want.active, f"{at} active")
        raw_id = row["_airbyte_raw_id"]
        assert isinstance(raw_id, str), f"{at}: _airbyte_raw_id {raw_id!r}"
        assert str(uuid.UUID(raw_id)) == raw_id, f"{at}: _airbyte_raw_id {raw_id!r}"
        assert_same(row["_airbyte_extracted_at"], want.extracted_at, f"{at} _airbyte_extracted_at")
        meta = row["_airbyte_meta"]
        assert isinstance(meta, dict), f"{at}: _airbyte_meta {meta!r}"
        assert set(meta) == {"changes", "sync_id"}, f"{at}: _airbyte_meta {meta!r}"
        assert meta["changes"] == [], f"{at}: _airbyte_meta {meta!r}"
        assert type(meta["sync_id"]) is int, f"{at}: _airbyte_meta {meta!r}"
        assert_same(row["_airbyte_generation_id"], want.generation, f"{at} _airbyte_generation_id")
        if raw_table:
            assert raw_id in raw, f"{at}: _airbyte_raw_id {raw_id} is not in {raw_table}"
            _, raw_extracted, raw_loaded, raw_data, raw_meta, raw_generation = raw[raw_id]
            assert raw_data == want.data(), at
            assert raw_extracted == row["_airbyte_extracted_at"], at
            assert raw_meta == meta, at
            assert raw_generation == want.generation, at
            assert raw_loaded is not None, f"{at}: raw row never marked as typed"
    return rows


def assert_raw(conn: psycopg.Connection[Any], raw_table: str, expected: list[User]) -> None:
    """The raw table holds exactly these records (any order)."""
    got = sorted(
        (json.dumps(row[3], sort_keys=True), row[1], row[5]) for row in raw_rows(conn, raw_table)
    )
    want = sorted(
        (json.dumps(u.data(), sort_keys=True), u.extracted_at, u.generation) for u in expected
    )
    assert got == want, f"{raw_table}: {got} != {want}"


def sync_ids(rows: list[dict[str, Any]]) -> set[int]:
    return {row["_airbyte_meta"]["sync_id"] for row in rows}


def stream_of_rows(conn: psycopg.Connection[Any], schema: str, table: str, column: str) -> set[str]:
    """Which streams' records a table holds, from the `<stream>:` prefix of their names."""
    if column == "name":
        query = sql.SQL("SELECT name FROM {}")
    else:
        query = sql.SQL("SELECT _airbyte_data->>'name' FROM {}")
    return {
        name.split(":", 1)[0]
        for (name,) in conn.execute(query.format(sql.Identifier(schema, table))).fetchall()
    }


def tables_by_content(
    conn: psycopg.Connection[Any], schema: str, streams: set[str], *, raw: bool = False
) -> dict[str, str]:
    """stream → the one table of `schema` holding its records; fails when a table holds
    records of two streams (a silent merge) or a stream's records are spread over tables."""
    found: dict[str, str] = {}
    for table in tables_in(conn, schema):
        holders = stream_of_rows(conn, schema, table, "_airbyte_data" if raw else "name")
        mine = holders & streams
        if not mine:
            continue
        assert len(holders) == 1, f"{schema}.{table} merges the records of streams {holders}"
        (stream,) = mine
        assert stream not in found, f"{stream} is spread over {found[stream]} and {table}"
        found[stream] = table
    assert set(found) == streams, f"tables of {schema} by stream: {found}"
    return found


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def other_role(pg_db: PgDatabase) -> Iterator[str]:
    """A role that is neither the loader nor a superuser, to grant things to."""
    name = f"reporting_{uuid.uuid4().hex[:8]}"
    pg_db.admin().execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(name)))
    try:
        yield name
    finally:
        pg_db.admin().execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
        pg_db.server.drop_role(name)


# --------------------------------------------------------------------------- §6.1 overwrite


@pytest.mark.parametrize("keys", [["id"], []], ids=["keyed", "keyless"])
def test_overwrite_holds_exactly_the_latest_load(
    pg_db: PgDatabase, tmp_path: Path, keys: list[str]
) -> None:
    """Each successful run replaces the final table's contents with its own records; a keyed
    stream keeps one row per key (latest wins), a keyless one every record; several batches per
    run change nothing. The raw table afterwards holds the latest load only."""
    config = pg_db.config(schema=SCHEMA, load_method="overwrite", batch_size_rows=2)
    first = [user(1, "a", 1), user(2, "a", 2), user(3, "a", 3), user(1, "b", 4)]
    load(config, tmp_path / "1", users_schema(keys=keys), *first, state(1))
    conn = pg_db.admin()
    if keys:
        rows_1 = assert_final(conn, [first[3], first[1], first[2]])
    else:
        rows_1 = assert_final(conn, [first[0], first[3], first[1], first[2]])
    assert len(sync_ids(rows_1)) == 1, rows_1

    second = [user(3, "c", 10), user(4, "c", 11), user(5, "c", 12), user(4, "d", 13)]
    load(config, tmp_path / "2", users_schema(keys=keys), *second, state(2))
    if keys:
        rows_2 = assert_final(conn, [second[0], second[3], second[2]])
    else:
        rows_2 = assert_final(conn, [second[0], second[1], second[3], second[2]])
    (sync_2,) = sync_ids(rows_2)
    (sync_1,) = sync_ids(rows_1)
    assert sync_2 > sync_1, "the second load's rows carry the second run's sync_id"
    # The brief (not SPEC §6.1, which speaks of the final table only): raw = latest load only.
    assert_raw(conn, RAW_USERS, second)


def test_stream_load_methods_overrides_one_stream(pg_db: PgDatabase, tmp_path: Path) -> None:
    """`stream_load_methods: {"users": "overwrite"}` makes users a full refresh while the other
    stream keeps the global `load_method` (append)."""
    config = pg_db.config(
        schema=SCHEMA, load_method="append", stream_load_methods={"users": "overwrite"}
    )
    run_1 = [user(1, "a", 1), user(2, "a", 2)]
    orders_1 = [user(1, "a", 1, stream="orders"), user(2, "a", 2, stream="orders")]
    load(
        config,
        tmp_path / "1",
        users_schema(keys=["id"]),
        users_schema("orders"),
        *run_1,
        *orders_1,
    )
    run_2 = [user(3, "b", 5)]
    orders_2 = [user(1, "b", 5, stream="orders")]
    load(
        config,
        tmp_path / "2",
        users_schema(keys=["id"]),
        users_schema("orders"),
        *run_2,
        *orders_2,
    )
    conn = pg_db.admin()
    assert_final(conn, run_2)
    assert_final(
        conn,
        [orders_1[0], orders_2[0], orders_1[1]],
        table="orders",
        raw_table="tap_data_raw__stream_orders",
    )


def view_state(conn: psycopg.Connection[Any], view: str) -> tuple[Any, ...]:
    """oid, owner, definition, comment and ACL of a view in tap_data."""
    row = conn.execute(
        "SELECT c.oid, pg_get_userbyid(c.relowner), pg_get_viewdef(c.oid),"
        " obj_description(c.oid, 'pg_class'), c.relacl::text[]"
        " FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relname = %s AND c.relkind = 'v'",
        (SCHEMA, view),
    ).fetchone()
    assert row is not None, f"view {SCHEMA}.{view} is gone"
    return tuple(row)


def test_overwrite_keeps_dependent_views(
    pg_db: PgDatabase, tmp_path: Path, other_role: str
) -> None:
    """Shape unchanged: the contents are swapped inside the existing table, so a view the
    loader made on it survives two overwrite runs without drop_cascade: same view, same
    comment, same grants, and it shows the new data."""
    config = pg_db.config(schema=SCHEMA, load_method="overwrite")
    load(config, tmp_path / "1", users_schema(keys=["id"]), user(1, "a", 1), user(2, "a", 2))
    loader = pg_db.loader_connect()
    loader.execute("CREATE VIEW tap_data.v AS SELECT id, name FROM tap_data.users")
    loader.execute("COMMENT ON VIEW tap_data.v IS 'users for reporting'")
    loader.execute(sql.SQL("GRANT SELECT ON tap_data.v TO {}").format(sql.Identifier(other_role)))
    conn = pg_db.admin()
    before = view_state(conn, "v")
    assert before[1] == pg_db.role.name
    assert before[3] == "users for reporting"
    table_before = table_oid(conn, SCHEMA, "users")

    for attempt, ids in ((2, [2, 3, 4]), (3, [5])):
        batch = [user(i, f"run{attempt}", 10 * attempt + i) for i in ids]
        load(config, tmp_path / str(attempt), users_schema(keys=["id"]), *batch)
        assert_final(conn, batch)
        assert view_state(conn, "v") == before, f"run {attempt} replaced or altered the view"
        assert table_oid(conn, SCHEMA, "users") == table_before, (
            f"run {attempt} replaced the table instead of swapping its contents"
        )
        row = conn.execute(
            "SELECT has_table_privilege(%s, 'tap_data.v', 'SELECT')", (other_role,)
        ).fetchone()
        assert row == (True,), f"run {attempt} lost the grant"
        shown = conn.execute("SELECT id, name FROM tap_data.v ORDER BY id").fetchall()
        assert shown == [(u.id, u.name) for u in batch], f"run {attempt}"
        loader_view = loader.execute("SELECT id, name FROM tap_data.v ORDER BY id").fetchall()
        assert loader_view == shown


def test_overwrite_across_a_schema_change_within_the_run(pg_db: PgDatabase, tmp_path: Path) -> None:
    """A second SCHEMA of the stream mid-load (a new property) does not cut the load in two: the
    final table holds exactly the whole run's records, the new column at the end."""
    config = pg_db.config(schema=SCHEMA, load_method="overwrite", batch_size_rows=2)
    first = [user(1, "a", 1), user(2, "a", 2)]
    load(config, tmp_path / "1", users_schema(keys=["id"]), *first)
    widened = schema_message(
        "users", {**USER_PROPERTIES, "email": {"type": ["string", "null"]}}, ["id"]
    )
    before = [user(10, "b", 10), user(11, "b", 11), user(12, "b", 12)]
    after = [user(13, "b", 13, email="13@example.org"), user(11, "c", 14, email="11@example.org")]
    load(config, tmp_path / "2", users_schema(keys=["id"]), *before, widened, *after)
    conn = pg_db.admin()
    assert_final(conn, [before[0], after[1], before[2], after[0]], with_email=True)
    assert_raw(conn, RAW_USERS, before + after)


def test_failed_reload_leaves_the_old_data(pg_db: PgDatabase, tmp_path: Path) -> None:
    """A reload that stops at a malformed line after committing some batches leaves the final
    table exactly as the last completed load left it. The next run, whose records carry the same
    table version, continues that load from its last emitted STATE (the records after it, the
    last one re-delivered) and then replaces the table with the whole load (SPEC §6.1)."""
    config = pg_db.config(schema=SCHEMA, load_method="overwrite", batch_size_rows=2)
    first = [user(1, "a", 1), user(2, "a", 2), user(3, "a", 3)]
    load(config, tmp_path / "1", users_schema(keys=["id"]), *first, state(1))
    conn = pg_db.admin()
    snapshot = assert_final(conn, first)

    failing = [user(i, "bad", 10 + i, version=VERSION_2) for i in range(10, 15)]
    stdin = lines(
        users_schema(keys=["id"]),
        failing[0],
        failing[1],
        state(2),
        failing[2],
        failing[3],
        state(3),
        failing[4],
        "{not json",
        user(15, "bad", 30),
    )
    run = run_target(config, stdin, tmp_path / "2")
    assert run.returncode != 0, run.stderr
    # Batches were committed before the bad line (their states went out, SPEC §9)...
    assert {"n": 3} in emitted_states(run.stdout), run.stdout
    # ...yet the final table still holds exactly the first load, every column unchanged.
    assert final_rows(conn, SCHEMA, "users") == snapshot

    rest = [failing[4], user(15, "bad", 30, version=VERSION_2)]
    load(config, tmp_path / "3", users_schema(keys=["id"]), *rest)
    assert_final(conn, [*failing, rest[1]])
    # The brief (not SPEC §6.1): the raw table holds the latest load only, here the records of
    # both runs that made it, the re-delivered one twice.
    assert_raw(conn, RAW_USERS, [*failing, *rest])


@pytest.mark.parametrize("keys", [[], ["id"]], ids=["keyless", "keyed"])
def test_an_unfinished_load_without_table_versions_is_discarded(
    pg_db: PgDatabase, tmp_path: Path, keys: list[str]
) -> None:
    """SPEC §6.1: a tap that restarts its full-table sync (no table versions) sends every record
    again, so the next run starts a new load instead of continuing the unfinished one: no row is
    doubled, and the discarded load is logged with its row count."""
    config = pg_db.config(schema=SCHEMA, load_method="overwrite", batch_size_rows=2)
    load(config, tmp_path / "1", users_schema(keys=keys), user(1, "a", 1), state(1))
    conn = pg_db.admin()
    snapshot = final_rows(conn, SCHEMA, "users")

    full = [user(i, "b", 10 + i) for i in range(10, 15)]
    run = run_target(
        config, lines(users_schema(keys=keys), *full[:4], state(2), "{not json"), tmp_path / "2"
    )
    assert run.returncode != 0, run.stderr
    # The next run discards the load, so no STATE after its records is emitted (issue 25).
    assert emitted_states(run.stdout) == [], run.stdout
    assert final_rows(conn, SCHEMA, "users") == snapshot

    again = run_target(config, lines(users_schema(keys=keys), *full, state(3)), tmp_path / "3")
    assert again.returncode == 0, again.stderr
    assert "discarded the unfinished full refresh" in again.stderr
    assert "(4 rows)" in again.stderr
    assert_final(conn, full)
    assert_raw(conn, RAW_USERS, full)


def test_an_unfinished_load_of_another_version_is_discarded(
    pg_db: PgDatabase, tmp_path: Path
) -> None:
    """Only records of the same table version continue an unfinished load (SPEC §6.1)."""
    config = pg_db.config(schema=SCHEMA, load_method="overwrite", batch_size_rows=2)
    killed = [user(i, "v2", i, version=VERSION_2) for i in (1, 2, 3, 4)]
    run = run_target(config, lines(users_schema(), *killed, state(1), "{not json"), tmp_path / "1")
    assert run.returncode != 0, run.stderr
    fresh = [user(i, "v3", 10 + i, version=VERSION_3) for i in (5, 6)]
    load(config, tmp_path / "2", users_schema(), *fresh, state(2))
    assert_final(pg_db.admin(), fresh)


def test_old_data_stays_readable_during_a_reload(pg_db: PgDatabase, tmp_path: Path) -> None:
    """While an overwrite run has committed batches but not ended, readers see the old rows
    (without waiting on a lock); at the end they see exactly the new ones."""
    config = pg_db.config(schema=SCHEMA, load_method="overwrite", batch_size_rows=2)
    first = [user(1, "a", 1), user(2, "a", 2), user(3, "a", 3)]
    load(config, tmp_path / "1", users_schema(keys=["id"]), *first)
    conn = reader(pg_db)
    snapshot = assert_final(conn, first)

    second = [user(10, "b", 10), user(11, "b", 11), user(12, "b", 12)]
    with live_run(config, tmp_path / "2") as live:
        live.send(users_schema(keys=["id"]), second[0], second[1], state(1))
        live.wait_until_idle()  # records 10 and 11 are committed: a batch is two records
        committed = {row[3]["name"] for row in raw_rows(conn, RAW_USERS)}
        assert {second[0].name, second[1].name} <= committed, "no raw rows mid-reload"
        assert final_rows(conn, SCHEMA, "users") == snapshot, "old rows gone mid-reload"
        live.send(second[2], state(2))
        returncode = live.finish()
        assert returncode == 0, live.stderr
    # A STATE after a load without versions waits for its swap (SPEC §6.1): the last one.
    assert emitted_states(live.stdout) == [{"n": 2}]
    assert_final(conn, second)


# --------------------------------------------------------------------------- §6.1 ACTIVATE_VERSION


@pytest.mark.parametrize("keys", [[], ["id"]], ids=["append", "append-dedup"])
def test_activate_version_keeps_only_the_new_version(
    pg_db: PgDatabase, tmp_path: Path, keys: list[str]
) -> None:
    """[AV v2, records of v2, AV v2] after a load of v1: the final table holds only the v2 rows,
    with `_airbyte_generation_id` v2 (records without a version take the activated one). The
    first AV arrives before any v2 record and must not empty the table meanwhile."""
    config = pg_db.config(schema=SCHEMA, batch_size_rows=1)
    old = [user(i, "v1", i, version=VERSION_1) for i in (1, 2, 3)]
    load(
        config,
        tmp_path / "1",
        users_schema(keys=keys),
        activate(VERSION_1),
        *old,
        activate(VERSION_1),
        state(0),
    )
    conn = reader(pg_db)
    snapshot = assert_final(conn, old)

    new = [
        user(2, "v2", 20, version=VERSION_2),
        user(4, "v2", 21, version=VERSION_2),
        user(5, "v2", 22, generation=VERSION_2),  # no version: the activated one
    ]
    with live_run(config, tmp_path / "2") as live:
        live.send(users_schema(keys=keys), activate(VERSION_2), state(1))
        live.wait_for_state({"n": 1})
        assert final_rows(conn, SCHEMA, "users") == snapshot, "the first AV emptied the table"
        live.send(new[0], state(2))
        live.wait_until_idle()
        committed = {row[3]["name"] for row in raw_rows(conn, RAW_USERS)}
        assert new[0].name in committed, "no raw row mid-reload"
        # The first AV still waits, and the v2 load is built beside the live table: readers
        # see the v1 rows alone, never two versions (SPEC §6.1, whatever the load method).
        assert final_rows(conn, SCHEMA, "users") == snapshot, "two versions mid-reload"
        live.send(new[1], state(3), new[2], state(4), activate(VERSION_2), state(5))
        returncode = live.finish()
        assert returncode == 0, live.stderr
    assert emitted_states(live.stdout) == [{"n": n} for n in range(1, 6)]
    assert_final(pg_db.admin(), new)


def test_activate_version_at_one_end_of_the_load(pg_db: PgDatabase, tmp_path: Path) -> None:
    """An AV before the records of its version, with no closing AV, takes effect at end of
    input; an AV after the records of its version, with no opening one, takes effect at once.
    Either way the table then holds only rows of that version."""
    config = pg_db.config(schema=SCHEMA)
    old = [user(1, "v1", 1, version=VERSION_1), user(2, "v1", 2, version=VERSION_1)]
    load(config, tmp_path / "1", users_schema(), activate(VERSION_1), *old, activate(VERSION_1))
    conn = pg_db.admin()
    assert_final(conn, old)
    new = [user(7, "v3", 7, version=VERSION_3), user(8, "v3", 8, generation=VERSION_3)]
    load(config, tmp_path / "2", users_schema(), activate(VERSION_3), *new, state(1))
    assert_final(conn, new)
    newer = [user(3, "v4", 30, version=VERSION_4), user(7, "v4", 31, version=VERSION_4)]
    load(config, tmp_path / "3", users_schema(), *newer, activate(VERSION_4), state(2))
    assert_final(conn, newer)


def test_lone_activate_version_takes_effect_at_end_of_input(
    pg_db: PgDatabase, tmp_path: Path
) -> None:
    """SPEC §6.1: an ACTIVATE_VERSION that arrives before any record of its version waits for
    the next one or for end of input. Here end of input comes first, so it takes effect then:
    the table keeps only rows of the new version, none, and a warning says so. It is not
    applied earlier: the STATE that came after it was emitted while the old rows were there."""
    config = pg_db.config(schema=SCHEMA)
    old = [user(1, "v1", 1, version=VERSION_1), user(2, "v1", 2, version=VERSION_1)]
    load(config, tmp_path / "1", users_schema(), activate(VERSION_1), *old, activate(VERSION_1))
    conn = pg_db.admin()
    assert_final(conn, old)
    run = load(config, tmp_path / "2", users_schema(), activate(VERSION_2), state(1))
    assert emitted_states(run.stdout) == [{"n": 1}]
    assert final_rows(conn, SCHEMA, "users") == []
    assert f"ACTIVATE_VERSION {VERSION_2} of stream users is applied at the end of input" in (
        run.stderr
    )


# --------------------------------------------------------------------------- §6.4 namespaces


def test_namespaces_keep_same_named_tables_apart(pg_db: PgDatabase, tmp_path: Path) -> None:
    """`schema-table` and `db-schema-table` streams land in their namespace schema; a stream
    without a namespace goes to the first `schema`. Same table name, separate final and raw
    tables, each holding its own records only."""
    config = pg_db.config(schema=f"{SCHEMA},other")
    streams = {
        "sales-users": ("sales", "sales_raw__stream_users"),
        "hr-users": ("hr", "hr_raw__stream_users"),
        "mydb-fin-users": ("fin", "fin_raw__stream_users"),
        "users": (SCHEMA, RAW_USERS),
    }
    sent = {
        "sales-users": [
            user(1, "a", 1, stream="sales-users"),
            user(2, "a", 2, stream="sales-users"),
            user(1, "b", 3, stream="sales-users"),
        ],
        "hr-users": [user(1, "a", 4, stream="hr-users"), user(3, "a", 5, stream="hr-users")],
        "mydb-fin-users": [user(1, "a", 6, stream="mydb-fin-users")],
        "users": [user(1, "a", 7), user(9, "a", 8)],
    }
    interleaved = [u for group in zip_longest(*sent.values()) for u in group if u is not None]
    load(config, tmp_path, *[users_schema(stream, keys=["id"]) for stream in streams], *interleaved)
    conn = pg_db.admin()
    expected_final = {
        "sales-users": [sent["sales-users"][2], sent["sales-users"][1]],  # dedup: latest id 1
        "hr-users": sent["hr-users"],
        "mydb-fin-users": sent["mydb-fin-users"],
        "users": sent["users"],
    }
    for stream, (schema, raw_table) in streams.items():
        assert tables_in(conn, schema) == ["users"], schema
        assert_final(conn, expected_final[stream], schema=schema, raw_table=raw_table)
        assert_raw(conn, raw_table, sent[stream])
    assert sorted(tables_in(conn, RAW_SCHEMA)) == sorted(raw for _, raw in streams.values())
    assert tables_in(conn, "other") == []
    assert not schema_exists(conn, "mydb"), "the database part of db-schema-table is no schema"


def test_ignore_stream_namespace(pg_db: PgDatabase, tmp_path: Path) -> None:
    """With ignore_stream_namespace every final table goes into the first `schema`, named after
    the whole stream name: sales-users → sales_users, hr-users → hr_users; nothing merges."""
    config = pg_db.config(schema=SCHEMA, ignore_stream_namespace=True)
    sent = {
        "sales-users": [
            user(1, "a", 1, stream="sales-users"),
            user(2, "a", 2, stream="sales-users"),
        ],
        "hr-users": [user(1, "a", 3, stream="hr-users")],
        "users": [user(1, "a", 4)],
    }
    load(
        config,
        tmp_path,
        *[users_schema(stream) for stream in sent],
        *[u for stream in sent for u in sent[stream]],
    )
    conn = pg_db.admin()
    assert tables_in(conn, SCHEMA) == ["hr_users", "sales_users", "users"]
    assert not schema_exists(conn, "sales")
    assert not schema_exists(conn, "hr")
    raws = tables_by_content(conn, RAW_SCHEMA, set(sent), raw=True)
    assert len(tables_in(conn, RAW_SCHEMA)) == 3
    tables = {"sales-users": "sales_users", "hr-users": "hr_users", "users": "users"}
    for stream, table in tables.items():
        assert_final(conn, sent[stream], table=table, raw_table=raws[stream])
        assert_raw(conn, raws[stream], sent[stream])


@pytest.mark.parametrize(
    ("ignore", "first", "second", "schema", "plain"),
    [
        (True, "sales_users", "sales-users", SCHEMA, "sales_users"),
        (False, "sales-users", "mydb-sales-users", "sales", "users"),
    ],
    ids=["ignore_stream_namespace", "same_namespace_and_table"],
)
def test_streams_conforming_to_one_name_never_merge(
    pg_db: PgDatabase,
    tmp_path: Path,
    ignore: bool,
    first: str,
    second: str,
    schema: str,
    plain: str,
) -> None:
    """Two streams whose tables conform to the same name get two tables (one with a suffix),
    final and raw, each holding only its own records, and keep them on the next run even when
    the streams arrive in the other order."""
    config = pg_db.config(schema=SCHEMA, ignore_stream_namespace=ignore)
    run_1 = {
        first: [user(1, "a", 1, stream=first), user(2, "a", 2, stream=first)],
        second: [user(1, "a", 3, stream=second)],
    }
    load(
        config,
        tmp_path / "1",
        users_schema(first),
        users_schema(second),
        run_1[first][0],
        run_1[second][0],
        run_1[first][1],
    )
    conn = pg_db.admin()
    finals = tables_by_content(conn, schema, {first, second})
    assert sorted(tables_in(conn, schema)) == sorted(finals.values())
    assert plain in finals.values(), finals
    other = next(table for table in finals.values() if table != plain)
    assert other.startswith(plain), f"{other} is not {plain} with a disambiguating suffix"
    raws = tables_by_content(conn, RAW_SCHEMA, {first, second}, raw=True)

    run_2 = {first: [user(3, "b", 10, stream=first)], second: [user(4, "b", 11, stream=second)]}
    load(
        config,
        tmp_path / "2",
        users_schema(second),
        users_schema(first),
        run_2[second][0],
        run_2[first][0],
    )
    assert tables_by_content(conn, schema, {first, second}) == finals
    assert tables_by_content(conn, RAW_SCHEMA, {first, second}, raw=True) == raws
    for stream in (first, second):
        everything = run_1[stream] + run_2[stream]
        assert_final(
            conn,
            sorted(everything, key=lambda u: (u.id, u.minute)),
            schema=schema,
            table=finals[stream],
            raw_table=raws[stream],
        )
        assert_raw(conn, raws[stream], everything)
