"""SPEC §4.1: one raw table per final table, never shared, whatever runs and settings came before;
and SPEC §6.3/§7: a dedup winner replaces the whole row, so a property removed from the schema is
NULL in the rows written from then on.

The sharing defect this guards against: stream `users` loaded with `schema: s_one`, then with
`schema: s_two`, used one raw table for both final tables, because raw tables were found by the
stream name in their comment. Then a hard delete, an overwrite or untyped raw rows of one schema
reached the other's final table. Databases an earlier version left in that state are repaired:
each final table's raw rows are moved to its own raw table.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from servers import PgDatabase

from .targetrun import messages, raw_rows, record, run_target, schema_message

pytestmark = pytest.mark.integration

RAW = "airbyte_internal"
EXTRACTED = "2024-05-01T00:00:00Z"
USERS = schema_message(
    "users",
    {
        "id": {"type": "integer"},
        "name": {"type": ["string", "null"]},
        "_ab_cdc_deleted_at": {"type": ["string", "null"], "format": "date-time"},
    },
    ["id"],
)


def user(uid: int, name: str, deleted: str | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"id": uid, "name": name}
    if deleted:
        data["_ab_cdc_deleted_at"] = deleted
    return record("users", data, EXTRACTED)


def load(pg_db: PgDatabase, workdir: Path, schema: str, *items: Any, **settings: Any) -> None:
    done = run_target(pg_db.config(schema=schema, **settings), messages(*items), workdir)
    assert done.returncode == 0, done.stderr


def final_rows(conn: psycopg.Connection[Any], schema: str) -> list[tuple[Any, ...]]:
    return conn.execute(
        sql.SQL("SELECT id, name FROM {} ORDER BY id").format(sql.Identifier(schema, "users"))
    ).fetchall()


def raw_names(conn: psycopg.Connection[Any], table: str) -> list[str]:
    return sorted(row[3]["name"] for row in raw_rows(conn, table))


def raw_tables(conn: psycopg.Connection[Any]) -> list[str]:
    return [
        name
        for (name,) in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s"
            " AND tablename NOT LIKE '%%deletes' ORDER BY 1",
            (RAW,),
        )
    ]


def test_each_schema_gets_its_own_raw_table(pg_db: PgDatabase, tmp_path: Path) -> None:
    load(pg_db, tmp_path / "1", "s_one", USERS, user(1, "one-a"), user(2, "one-b"))
    load(pg_db, tmp_path / "2", "s_two", USERS, user(1, "two-a"), user(3, "two-c"))
    with pg_db.loader_connect() as conn:
        assert raw_tables(conn) == ["s_one_raw__stream_users", "s_two_raw__stream_users"]
        assert raw_names(conn, "s_one_raw__stream_users") == ["one-a", "one-b"]
        assert raw_names(conn, "s_two_raw__stream_users") == ["two-a", "two-c"]
        # A hard delete in one schema leaves the other's row alone.
    load(pg_db, tmp_path / "3", "s_two", USERS, user(1, "two-a", "2024-06-01T00:00:00Z"))
    # An overwrite in one schema keeps the other's raw rows.
    load(pg_db, tmp_path / "4", "s_one", USERS, user(2, "one-b2"), load_method="overwrite")
    with pg_db.loader_connect() as conn:
        assert final_rows(conn, "s_one") == [(2, "one-b2")]
        assert final_rows(conn, "s_two") == [(3, "two-c")]
        assert raw_names(conn, "s_one_raw__stream_users") == ["one-b2"]
        assert raw_names(conn, "s_two_raw__stream_users") == ["two-a", "two-a", "two-c"]


def test_untyped_raw_rows_are_typed_into_their_own_schema(
    pg_db: PgDatabase, tmp_path: Path
) -> None:
    load(pg_db, tmp_path / "1", "s_one", USERS, user(1, "one-a"))
    load(pg_db, tmp_path / "2", "s_two", USERS, user(5, "two-e"), disable_type_dedupe=True)
    load(pg_db, tmp_path / "3", "s_one", USERS, user(2, "one-b"))
    load(pg_db, tmp_path / "4", "s_two", USERS, user(6, "two-f"))
    with pg_db.loader_connect() as conn:
        assert final_rows(conn, "s_one") == [(1, "one-a"), (2, "one-b")]
        assert final_rows(conn, "s_two") == [(5, "two-e"), (6, "two-f")]


def test_a_raw_table_an_earlier_version_shared_is_split(pg_db: PgDatabase, tmp_path: Path) -> None:
    """Arrange what the earlier version left: s_two's raw rows inside s_one's raw table, both
    tables' comments naming only the stream; the next run moves them back."""
    load(pg_db, tmp_path / "1", "s_one", USERS, user(1, "one-a"))
    load(pg_db, tmp_path / "2", "s_two", USERS, user(1, "two-a"), user(4, "two-d"))
    legacy = json.dumps({"stream": "users"})
    shared = sql.Identifier(RAW, "s_one_raw__stream_users")
    own = sql.Identifier(RAW, "s_two_raw__stream_users")
    with pg_db.loader_connect() as conn:
        conn.execute(sql.SQL("INSERT INTO {} SELECT * FROM {}").format(shared, own))
        conn.execute(sql.SQL("DROP TABLE {}").format(own))
        conn.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(shared, sql.Literal(legacy)))
    load(pg_db, tmp_path / "3", "s_one", USERS, user(2, "one-b"))
    with pg_db.loader_connect() as conn:
        assert raw_names(conn, "s_one_raw__stream_users") == ["one-a", "one-b"]
        assert raw_names(conn, "s_two_raw__stream_users") == ["two-a", "two-d"]
        assert final_rows(conn, "s_one") == [(1, "one-a"), (2, "one-b")]
        assert final_rows(conn, "s_two") == [(1, "two-a"), (4, "two-d")]


@pytest.mark.parametrize("same_run", [False, True], ids=["next-run", "same-run"])
def test_removed_property_is_null_in_the_winning_row(
    pg_db: PgDatabase, tmp_path: Path, same_run: bool
) -> None:
    """SPEC §6.3: the winner replaces the whole row; a property the schema dropped is NULL."""
    first = schema_message(
        "items",
        {"id": {"type": "integer"}, "a": {"type": "string"}, "c": {"type": "integer"}},
        ["id"],
    )
    second = schema_message("items", {"id": {"type": "integer"}, "a": {"type": "string"}}, ["id"])
    before = record("items", {"id": 1, "a": "x", "c": 5}, EXTRACTED)
    after = record("items", {"id": 1, "a": "z"}, EXTRACTED)
    if same_run:
        load(pg_db, tmp_path / "1", "tap", first, before, second, after)
    else:
        load(pg_db, tmp_path / "1", "tap", first, before)
        load(pg_db, tmp_path / "2", "tap", second, after)
    with pg_db.loader_connect() as conn:
        rows = conn.execute("SELECT id, a, c FROM tap.items ORDER BY id").fetchall()
    assert rows == [(1, "z", None)]
