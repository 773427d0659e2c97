"""SPEC §7 (schema evolution) and §8 (dependent objects and CASCADE), end to end through the real
CLI, checked against the typing rules of §4.3/§4.4: column by column, type by type, row by row."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import set_json_loads
from servers import PgDatabase

from .targetrun import META_COLUMNS, Run, messages, raw_rows, record, run_target, schema_message

pytestmark = pytest.mark.integration

SCHEMA = "tap_data"
STREAM = "users"
RAW_SCHEMA = "airbyte_internal"
RAW_TABLE = "tap_data_raw__stream_users"
UTC = timezone.utc
#: Every record gets the same extraction time, so that only arrival order can break ties (§6.3).
EXTRACTED = "2024-05-01T00:00:00Z"

VARCHAR = "character varying"
NUMERIC = "numeric"
BIGINT = "bigint"
JSONB = "jsonb"
TIMESTAMPTZ = "timestamp with time zone"


# --------------------------------------------------------------------------- helpers


def nullable(json_type: str, **extra: Any) -> dict[str, Any]:
    """A nullable JSON-schema property of one type (plus e.g. `format`)."""
    return {"type": [json_type, "null"], **extra}


INTEGER = nullable("integer")
NUMBER = nullable("number")
STRING = nullable("string")
BOOLEAN = nullable("boolean")
OBJECT = nullable("object")
ARRAY = nullable("array")
DATE = nullable("string", format="date")
DATE_TIME = nullable("string", format="date-time")


def json_line(item: dict[str, Any]) -> str:
    """A message as JSON, Decimal values written as exact JSON numbers."""
    marker = "@@DECIMAL@@"
    text = json.dumps(
        item, default=lambda v: f"{marker}{v}{marker}" if isinstance(v, Decimal) else str(v)
    )
    return text.replace(f'"{marker}', "").replace(f'{marker}"', "")


def users_schema(properties: dict[str, Any], keys: list[str] | None = None) -> dict[str, Any]:
    return schema_message(STREAM, properties, ["id"] if keys is None else keys)


def user(data: dict[str, Any]) -> dict[str, Any]:
    return record(STREAM, data, EXTRACTED)


class Target:
    """Runs the target into schema tap_data, each run in its own work directory."""

    def __init__(self, pg_db: PgDatabase, tmp_path: Path) -> None:
        self.pg_db = pg_db
        self.tmp_path = tmp_path
        self.count = 0

    def run(self, *items: dict[str, Any] | str, **config: Any) -> Run:
        self.count += 1
        lines = [item if isinstance(item, str) else json_line(item) for item in items]
        return run_target(
            self.pg_db.config(schema=SCHEMA, **config),
            messages(*lines),
            self.tmp_path / f"run{self.count}",
        )

    def load(self, *items: dict[str, Any] | str, **config: Any) -> Run:
        run = self.run(*items, **config)
        assert run.returncode == 0, run.stderr[-5000:]
        return run


@pytest.fixture
def target(pg_db: PgDatabase, tmp_path: Path) -> Target:
    return Target(pg_db, tmp_path)


@pytest.fixture
def other_role(pg_db: PgDatabase) -> Iterator[str]:
    """A NOLOGIN role with no privileges, dropped (with its grants) after the test."""
    name = f"reader_{secrets.token_hex(4)}"
    conn = pg_db.admin()
    conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(name)))
    try:
        yield name
    finally:
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def admin(pg_db: PgDatabase) -> psycopg.Connection[Any]:
    """An admin connection whose JSONB numbers stay exact (Decimal, big ints)."""
    conn = pg_db.admin()
    set_json_loads(lambda text: json.loads(text, parse_float=Decimal), conn)
    return conn


def columns(conn: psycopg.Connection[Any], table: str = STREAM) -> list[tuple[str, str, str]]:
    """(name, data_type, is_nullable) of a tap_data table's or view's columns, in order."""
    return [
        tuple(row)
        for row in conn.execute(
            "SELECT column_name, data_type, is_nullable FROM information_schema.columns"
            " WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
            (SCHEMA, table),
        ).fetchall()
    ]


def property_columns(conn: psycopg.Connection[Any]) -> list[tuple[str, str]]:
    """(name, data_type) of the final table's property columns (not `_airbyte_*`), in order."""
    return [(name, kind) for name, kind, _ in columns(conn) if not name.startswith("_airbyte_")]


def column_type(conn: psycopg.Connection[Any], name: str) -> str:
    types = {column: kind for column, kind, _ in columns(conn)}
    return types[name]


def final_rows(conn: psycopg.Connection[Any], table: str = STREAM) -> list[dict[str, Any]]:
    """Every row of a tap_data table or view as a dict, ordered by id."""
    with conn.cursor(row_factory=dict_row) as cursor:
        cursor.execute(
            sql.SQL("SELECT * FROM {} ORDER BY id").format(sql.Identifier(SCHEMA, table))
        )
        return cursor.fetchall()


def by_id(rows: list[dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    return {row["id"]: row for row in rows}


def same(actual: Any, expected: Any) -> bool:
    """Equal and of the same Python type (so 5 is not Decimal(5), nor "5")."""
    return type(actual) is type(expected) and actual == expected


def check_value(problems: list[str], where: str, actual: Any, expected: Any) -> None:
    if not same(actual, expected):
        problems.append(f"{where}: got {actual!r}, expected {expected!r}")


def relation(conn: psycopg.Connection[Any], name: str) -> dict[str, Any] | None:
    """What a tap_data view or materialized view looks like, or None when it does not exist."""
    with conn.cursor(row_factory=dict_row) as cursor:
        cursor.execute(
            "SELECT c.oid::bigint AS oid, c.relkind::text AS relkind,"
            " pg_get_userbyid(c.relowner)::text AS owner,"
            " pg_get_viewdef(c.oid) AS definition,"
            " obj_description(c.oid, 'pg_class') AS comment,"
            " coalesce(c.relacl::text[], '{}') AS acl"
            " FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relname = %s",
            (SCHEMA, name),
        )
        found = cursor.fetchone()
        if found is None:
            return None
        cursor.execute(
            "SELECT attname::text AS name, col_description(attrelid, attnum) AS comment"
            " FROM pg_attribute WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped"
            " ORDER BY attnum",
            (found["oid"],),
        )
        found["column_comments"] = {row["name"]: row["comment"] for row in cursor.fetchall()}
        return found


def error_naming(run: Run, *names: str) -> str | None:
    """The first stderr line that names every one of `names`, else None."""
    for line in run.stderr.splitlines():
        if all(name in line for name in names):
            return line
    return None


def drop_logged(run: Run, name: str) -> bool:
    """Some stderr line names `name` and says it was dropped."""
    return any(name in line and "drop" in line.lower() for line in run.stderr.splitlines())


def assert_no_changes(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        assert row["_airbyte_meta"]["changes"] == [], row


# --------------------------------------------------------------------------- §7 new properties


def test_new_property_in_a_second_schema_message_adds_a_nullable_column(target: Target) -> None:
    """§7 + §4.2: a property first seen in a later SCHEMA message of the same run becomes a nullable
    column after the earlier property columns; rows typed before it have NULL there."""
    target.load(
        users_schema({"id": INTEGER, "name": STRING}),
        user({"id": 1, "name": "ann"}),
        user({"id": 2, "name": "bob"}),
        users_schema({"id": INTEGER, "name": STRING, "email": STRING}),
        user({"id": 3, "name": "cy", "email": "cy@example.com"}),
        user({"id": 4, "name": "di"}),
    )
    conn = admin(target.pg_db)
    assert property_columns(conn) == [("id", BIGINT), ("name", VARCHAR), ("email", VARCHAR)]
    nullability = {name: null for name, _, null in columns(conn)}
    assert nullability["email"] == "YES"
    rows = final_rows(conn)
    assert [(r["id"], r["name"], r["email"]) for r in rows] == [
        (1, "ann", None),
        (2, "bob", None),
        (3, "cy", "cy@example.com"),
        (4, "di", None),
    ]
    assert_no_changes(rows)


def test_new_property_in_a_second_run_adds_a_nullable_column(target: Target) -> None:
    target.load(
        users_schema({"id": INTEGER, "name": STRING}),
        user({"id": 1, "name": "ann"}),
        user({"id": 2, "name": "bob"}),
    )
    conn = admin(target.pg_db)
    raw_before = raw_rows(conn, RAW_TABLE)
    target.load(
        users_schema({"id": INTEGER, "name": STRING, "score": NUMBER, "tags": ARRAY}),
        user({"id": 3, "name": "cy", "score": Decimal("1.10"), "tags": ["a"]}),
        user({"id": 1, "name": "ann2", "score": 7}),
    )
    assert property_columns(conn) == [
        ("id", BIGINT),
        ("name", VARCHAR),
        ("score", NUMERIC),
        ("tags", JSONB),
    ]
    nullability = {name: null for name, _, null in columns(conn)}
    assert (nullability["score"], nullability["tags"]) == ("YES", "YES")
    rows = final_rows(conn)
    got = [(r["id"], r["name"], r["score"], r["tags"]) for r in rows]
    assert got == [
        (1, "ann2", Decimal(7), None),
        (2, "bob", None, None),
        (3, "cy", Decimal("1.10"), ["a"]),
    ]
    assert same(rows[1]["score"], None)
    assert str(rows[2]["score"]) == "1.10", "number kept exactly as sent"
    assert_no_changes(rows)
    # The raw rows of the first run are untouched.
    raw_after = {row[0]: row for row in raw_rows(conn, RAW_TABLE)}
    for row in raw_before:
        assert raw_after[row[0]] == row


# --------------------------------------------------------------------------- §7 widening

#: (column, schema before, type before, schema after, type after,
#:  value sent before, read back after the change; value sent after, read back).
WIDENINGS: list[tuple[str, dict[str, Any], str, dict[str, Any], str, Any, Any, Any, Any]] = [
    ("i2n", INTEGER, BIGINT, NUMBER, NUMERIC, 5, Decimal(5), Decimal("2.7"), Decimal("2.7")),
    (
        "big2n",
        INTEGER,
        BIGINT,
        NUMBER,
        NUMERIC,
        9007199254740993,
        Decimal(9007199254740993),
        Decimal("12345678901234567890.123456789"),
        Decimal("12345678901234567890.123456789"),
    ),
    (
        "d2ts",
        DATE,
        "date",
        DATE_TIME,
        TIMESTAMPTZ,
        "2024-05-01",
        datetime(2024, 5, 1, tzinfo=UTC),
        "2024-05-02T10:30:00+02:00",
        datetime(2024, 5, 2, 8, 30, tzinfo=UTC),
    ),
    ("i2s", INTEGER, BIGINT, STRING, VARCHAR, 5, "5", "five", "five"),
    ("b2s", BOOLEAN, "boolean", STRING, VARCHAR, True, "true", "maybe", "maybe"),
    ("n2s", NUMBER, NUMERIC, STRING, VARCHAR, Decimal("2.5"), "2.5", "2.5 kg", "2.5 kg"),
    ("d2s", DATE, "date", STRING, VARCHAR, "2024-05-01", "2024-05-01", "soon", "soon"),
    ("s2o", STRING, VARCHAR, OBJECT, JSONB, "abc", "abc", {"k": 1}, {"k": 1}),
    (
        "n2o",
        NUMBER,
        NUMERIC,
        OBJECT,
        JSONB,
        Decimal("2.5"),
        Decimal("2.5"),
        {"a": [1]},
        {"a": [1]},
    ),
    (
        "n2a",
        NUMBER,
        NUMERIC,
        ARRAY,
        JSONB,
        Decimal("3.25"),
        Decimal("3.25"),
        [1, "x"],
        [1, "x"],
    ),
    ("b2o", BOOLEAN, "boolean", OBJECT, JSONB, True, True, {"b": False}, {"b": False}),
    ("i2a", INTEGER, BIGINT, ARRAY, JSONB, 7, 7, [7], [7]),
]


@pytest.mark.parametrize("second_run", [False, True], ids=["same_run", "second_run"])
def test_widening_changes_the_column_in_place(target: Target, second_run: bool) -> None:
    """§7: each widening changes the column's type where it stands; earlier values are converted
    exactly (integer → numeric, date → midnight UTC, scalar → its text, anything → JSON), later
    values are stored exactly; no row is lost and the raw table keeps what it had."""
    before = users_schema({"id": INTEGER, **{w[0]: w[1] for w in WIDENINGS}})
    after = users_schema({"id": INTEGER, **{w[0]: w[3] for w in WIDENINGS}})
    old = [
        user({"id": 1, **{w[0]: w[5] for w in WIDENINGS}}),
        user({"id": 2, **{w[0]: None for w in WIDENINGS}}),
    ]
    new = [user({"id": 3, **{w[0]: w[7] for w in WIDENINGS}})]
    conn = admin(target.pg_db)
    raw_before: list[Any] = []
    if second_run:
        target.load(before, *old)
        assert property_columns(conn) == [("id", BIGINT)] + [(w[0], w[2]) for w in WIDENINGS]
        raw_before = raw_rows(conn, RAW_TABLE)
        target.load(after, *new)
    else:
        target.load(before, *old, after, *new)

    problems: list[str] = []
    expected_columns = [("id", BIGINT)] + [(w[0], w[4]) for w in WIDENINGS]
    got_columns = property_columns(conn)
    if [name for name, _ in got_columns] != [name for name, _ in expected_columns]:
        problems.append(f"column names/positions changed: {got_columns}")
    for (name, kind), (_, expected_kind) in zip(got_columns, expected_columns, strict=False):
        if kind != expected_kind:
            problems.append(f"column {name}: type {kind}, expected {expected_kind}")
    rows = by_id(final_rows(conn))
    if sorted(rows) != [1, 2, 3]:
        problems.append(f"rows lost or added: ids {sorted(rows)}")
    else:
        for name, *_, old_read, _, new_read in WIDENINGS:
            check_value(problems, f"{name} old row", rows[1][name], old_read)
            check_value(problems, f"{name} null row", rows[2][name], None)
            check_value(problems, f"{name} new row", rows[3][name], new_read)
        for row in rows.values():
            if row["_airbyte_meta"]["changes"] != []:
                problems.append(f"id {row['id']}: _airbyte_meta {row['_airbyte_meta']}")
    raw = raw_rows(conn, RAW_TABLE)
    sent = [json.loads(json_line(m), parse_float=Decimal)["record"] for m in old + new]
    if sorted((row[3] for row in raw), key=lambda d: d["id"]) != sent:
        problems.append(f"raw _airbyte_data differs from the records sent: {[r[3] for r in raw]}")
    if second_run:
        raw_after = {row[0]: row for row in raw}
        for row in raw_before:
            if raw_after.get(row[0]) != row:
                problems.append(f"raw row changed: {row} -> {raw_after.get(row[0])}")
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------- §7 narrowing

#: (column, schema before, schema after, type kept, value before → read, value after → read).
NARROWINGS: list[tuple[str, dict[str, Any], dict[str, Any] | None, str, Any, Any, Any, Any]] = [
    ("s_int", STRING, INTEGER, VARCHAR, "abc", "abc", 42, "42"),
    ("s_bool", STRING, BOOLEAN, VARCHAR, "x", "x", True, "true"),
    ("n_int", NUMBER, INTEGER, NUMERIC, Decimal("2.5"), Decimal("2.5"), 7, Decimal(7)),
    (
        "ts_date",
        DATE_TIME,
        DATE,
        TIMESTAMPTZ,
        "2024-05-01T10:00:00Z",
        datetime(2024, 5, 1, 10, tzinfo=UTC),
        "2024-06-01",
        datetime(2024, 6, 1, tzinfo=UTC),
    ),
    ("o_str", OBJECT, STRING, JSONB, {"k": 1}, {"k": 1}, "plain", "plain"),
    # Removed property: the column stays, NULL from then on.
    ("gone", STRING, None, VARCHAR, "here", "here", None, None),
]


@pytest.mark.parametrize("second_run", [False, True], ids=["same_run", "second_run"])
def test_narrowed_or_removed_property_keeps_the_wider_column(
    target: Target, second_run: bool
) -> None:
    """§7: a narrowed or incompatible type keeps the wider column (new values stored as they fit
    it); a removed property keeps its column, NULL in new rows."""
    before = users_schema({"id": INTEGER, **{n[0]: n[1] for n in NARROWINGS}})
    after = users_schema({"id": INTEGER, **{n[0]: n[2] for n in NARROWINGS if n[2] is not None}})
    old = user({"id": 1, **{n[0]: n[4] for n in NARROWINGS}})
    new = user({"id": 2, **{n[0]: n[6] for n in NARROWINGS if n[2] is not None}})
    if second_run:
        target.load(before, old)
        target.load(after, new)
    else:
        target.load(before, old, after, new)
    conn = admin(target.pg_db)
    problems: list[str] = []
    expected_columns = [("id", BIGINT)] + [(n[0], n[3]) for n in NARROWINGS]
    got_columns = property_columns(conn)
    if got_columns != expected_columns:
        problems.append(f"columns {got_columns}, expected {expected_columns}")
    rows = by_id(final_rows(conn))
    if sorted(rows) != [1, 2]:
        problems.append(f"rows lost or added: ids {sorted(rows)}")
    else:
        for name, *_, old_read, _, new_read in NARROWINGS:
            check_value(problems, f"{name} old row", rows[1].get(name, "<missing>"), old_read)
            check_value(problems, f"{name} new row", rows[2].get(name, "<missing>"), new_read)
        for row in rows.values():
            if row["_airbyte_meta"]["changes"] != []:
                problems.append(f"id {row['id']}: _airbyte_meta {row['_airbyte_meta']}")
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------- §7 arrival order


Scenario = tuple[list[dict[str, Any]], str, dict[int, tuple[Any, Any]]]


def _order_full_batches() -> Scenario:
    """15 records under A (id 1 last, in the partial batch), SCHEMA B adds a column, 15 newer."""
    a = users_schema({"id": INTEGER, "version": STRING})
    b = users_schema({"id": INTEGER, "version": STRING, "extra": STRING})
    first = [user({"id": i, "version": "a"}) for i in [*range(2, 16), 1]]
    second = [user({"id": i, "version": "b", "extra": f"x{i}"}) for i in range(1, 16)]
    expected = {i: ("b", f"x{i}") for i in range(1, 16)}
    return [a, *first, b, *second], "extra", expected


def _order_partial_batch() -> Scenario:
    """A partial batch under A, SCHEMA B, then at once a newer record for one of its keys."""
    a = users_schema({"id": INTEGER, "version": STRING})
    b = users_schema({"id": INTEGER, "version": STRING, "extra": STRING})
    first = [user({"id": i, "version": "a"}) for i in range(1, 6)]
    items = [a, *first, b, user({"id": 3, "version": "b", "extra": "x3"})]
    expected: dict[int, tuple[Any, Any]] = {i: ("a", None) for i in range(1, 6)}
    expected[3] = ("b", "x3")
    return items, "extra", expected


def _order_widened() -> Scenario:
    """Same, the change widening a column (integer → number) instead of adding one."""
    a = users_schema({"id": INTEGER, "version": STRING, "v": INTEGER})
    b = users_schema({"id": INTEGER, "version": STRING, "v": NUMBER})
    first = [user({"id": i, "version": "a", "v": i}) for i in range(1, 4)]
    items = [a, *first, b, user({"id": 2, "version": "b", "v": Decimal("2.5")})]
    expected = {1: ("a", Decimal(1)), 2: ("b", Decimal("2.5")), 3: ("a", Decimal(3))}
    return items, "v", expected


@pytest.mark.parametrize(
    "scenario",
    [_order_full_batches, _order_partial_batch, _order_widened],
    ids=["full_batches", "partial_batch", "widened"],
)
def test_records_apply_in_arrival_order_across_schema_changes(
    target: Target, scenario: Any
) -> None:
    """§7 + §6.3: with no cursor and equal extraction times, the later arrival wins, also when
    the SCHEMA change splits the records into batches of different schemas."""
    items, extra_column, expected = scenario()
    target.load(*items, batch_size_rows=10)
    conn = admin(target.pg_db)
    rows = final_rows(conn)
    got = {row["id"]: (row["version"], row[extra_column]) for row in rows}
    assert got == expected
    for row in rows:
        assert same(row[extra_column], expected[row["id"]][1]), row
    assert len(raw_rows(conn, RAW_TABLE)) == sum(1 for i in items if i["type"] == "RECORD")


# --------------------------------------------------------------------------- §8 dependent objects

AMOUNT_BEFORE = users_schema({"id": INTEGER, "name": STRING, "amount": INTEGER})
AMOUNT_AFTER = users_schema({"id": INTEGER, "name": STRING, "amount": NUMBER})
FIRST_LOAD = [
    AMOUNT_BEFORE,
    user({"id": 1, "name": "ann", "amount": 5}),
    user({"id": 2, "name": "bob", "amount": 0}),
]
#: The widening load: a change to row 1 and a new row 3 with a fractional amount.
WIDENING_LOAD = [
    AMOUNT_AFTER,
    user({"id": 1, "name": "ann", "amount": 6}),
    user({"id": 3, "name": "cy", "amount": Decimal("2.7")}),
]
ROWS_AFTER_WIDENING = [
    (1, "ann", Decimal(6)),
    (2, "bob", Decimal(0)),
    (3, "cy", Decimal("2.7")),
]


def amounts(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return [(r["id"], r["name"], r["amount"]) for r in final_rows(conn)]


def test_views_owned_by_the_loader_survive_a_widening(target: Target, other_role: str) -> None:
    """§8: views the loading role owns (and views on them) are saved with their comments and
    grants, dropped, and recreated around the type change, without drop_cascade."""
    target.load(*FIRST_LOAD)
    loader = target.pg_db.loader_connect()
    reader = sql.Identifier(other_role)
    statements: list[sql.SQL | sql.Composed] = [
        sql.SQL(
            "CREATE VIEW tap_data.positive_amounts AS"
            " SELECT id, name, amount FROM tap_data.users WHERE amount > 0"
        ),
        sql.SQL("COMMENT ON VIEW tap_data.positive_amounts IS 'Users who owe something'"),
        sql.SQL("COMMENT ON COLUMN tap_data.positive_amounts.amount IS 'Amount owed'"),
        sql.SQL("GRANT USAGE ON SCHEMA tap_data TO {}").format(reader),
        sql.SQL("GRANT SELECT ON tap_data.positive_amounts TO {}").format(reader),
        sql.SQL(
            "CREATE VIEW tap_data.doubled AS"
            " SELECT id, amount * 2 AS twice FROM tap_data.positive_amounts"
        ),
        sql.SQL("COMMENT ON VIEW tap_data.doubled IS 'Twice the amount'"),
        sql.SQL("GRANT SELECT ON tap_data.doubled TO {}").format(reader),
    ]
    for statement in statements:
        loader.execute(statement)
    conn = admin(target.pg_db)
    views_before = {name: relation(conn, name) for name in ["positive_amounts", "doubled"]}

    run = target.run(*WIDENING_LOAD)
    assert run.returncode == 0, run.stderr[-5000:]

    assert column_type(conn, "amount") == NUMERIC
    assert amounts(conn) == ROWS_AFTER_WIDENING
    for name, old in views_before.items():
        new = relation(conn, name)
        assert old is not None
        assert new is not None, f"view {name} is gone"
        assert new["relkind"] == "v"
        assert new["owner"] == target.pg_db.role.name
        assert new["comment"] == old["comment"]
        assert new["column_comments"] == old["column_comments"]
        assert sorted(new["acl"]) == sorted(old["acl"])
    assert relation(conn, "positive_amounts")["column_comments"]["amount"] == "Amount owed"  # type: ignore[index]
    # Same semantics, now over the widened column.
    assert columns(conn, "positive_amounts") == [
        ("id", BIGINT, "YES"),
        ("name", VARCHAR, "YES"),
        ("amount", NUMERIC, "YES"),
    ]
    assert [(r["id"], r["amount"]) for r in final_rows(conn, "positive_amounts")] == [
        (1, Decimal(6)),
        (3, Decimal("2.7")),
    ]
    assert [(r["id"], r["twice"]) for r in final_rows(conn, "doubled")] == [
        (1, Decimal(12)),
        (3, Decimal("5.4")),
    ]
    # The grant still works for the other role.
    with conn.transaction():
        conn.execute(sql.SQL("SET LOCAL ROLE {}").format(reader))
        count = conn.execute("SELECT count(*) FROM tap_data.doubled").fetchone()
    assert count == (2,)


def test_view_owned_by_another_role_blocks_the_change_unless_drop_cascade(target: Target) -> None:
    """§8: a dependent view the loader does not own stops the run before anything changes, with
    a message naming it and drop_cascade; with drop_cascade it is dropped and logged, while the
    loader's own view survives."""
    target.load(*FIRST_LOAD)
    conn = admin(target.pg_db)
    conn.execute("CREATE VIEW tap_data.other_amounts AS SELECT id, amount FROM tap_data.users")
    conn.execute("COMMENT ON VIEW tap_data.other_amounts IS 'not yours'")
    target.pg_db.loader_connect().execute(
        "CREATE VIEW tap_data.loader_amounts AS SELECT id, amount FROM tap_data.users"
    )
    rows_before = final_rows(conn)
    views_before = {n: relation(conn, n) for n in ["other_amounts", "loader_amounts"]}

    failed = target.run(*WIDENING_LOAD)
    assert failed.returncode != 0, failed.stderr[-5000:]
    assert error_naming(failed, "other_amounts", "drop_cascade"), failed.stderr[-5000:]
    assert column_type(conn, "amount") == BIGINT
    assert final_rows(conn) == rows_before
    for name, old in views_before.items():
        assert relation(conn, name) == old, f"view {name} changed"

    cascaded = target.run(*WIDENING_LOAD, drop_cascade=True)
    assert cascaded.returncode == 0, cascaded.stderr[-5000:]
    assert column_type(conn, "amount") == NUMERIC
    assert amounts(conn) == ROWS_AFTER_WIDENING
    assert relation(conn, "other_amounts") is None
    assert drop_logged(cascaded, "other_amounts"), cascaded.stderr[-5000:]
    # The loader's own view is not collateral damage of drop_cascade.
    mine = relation(conn, "loader_amounts")
    assert mine is not None, "the loader's own view was dropped too"
    assert [(r["id"], r["amount"]) for r in final_rows(conn, "loader_amounts")] == [
        (1, Decimal(6)),
        (2, Decimal(0)),
        (3, Decimal("2.7")),
    ]


def test_materialized_view_blocks_the_change_unless_drop_cascade(target: Target) -> None:
    """§8: a non-view dependency (a materialized view, even the loader's own) stops the run before
    anything changes; with drop_cascade it is dropped and logged."""
    target.load(*FIRST_LOAD)
    target.pg_db.loader_connect().execute(
        "CREATE MATERIALIZED VIEW tap_data.amounts_mv AS SELECT id, amount FROM tap_data.users"
    )
    conn = admin(target.pg_db)
    rows_before = final_rows(conn)
    mv_before = relation(conn, "amounts_mv")
    assert mv_before is not None
    assert mv_before["relkind"] == "m"

    failed = target.run(*WIDENING_LOAD)
    assert failed.returncode != 0, failed.stderr[-5000:]
    assert error_naming(failed, "amounts_mv", "drop_cascade"), failed.stderr[-5000:]
    assert column_type(conn, "amount") == BIGINT
    assert final_rows(conn) == rows_before
    assert relation(conn, "amounts_mv") == mv_before

    cascaded = target.run(*WIDENING_LOAD, drop_cascade=True)
    assert cascaded.returncode == 0, cascaded.stderr[-5000:]
    assert column_type(conn, "amount") == NUMERIC
    assert amounts(conn) == ROWS_AFTER_WIDENING
    assert relation(conn, "amounts_mv") is None
    assert drop_logged(cascaded, "amounts_mv"), cascaded.stderr[-5000:]


def test_view_that_no_longer_compiles_blocks_the_change_unless_drop_cascade(
    target: Target,
) -> None:
    """§8: a loader-owned view that cannot be recreated over the widened column (it calls a
    function that only takes bigint) stops the run before anything changes."""
    target.load(*FIRST_LOAD)
    loader = target.pg_db.loader_connect()
    loader.execute(
        "CREATE FUNCTION tap_data.bigint_only(bigint) RETURNS bigint"
        " LANGUAGE sql IMMUTABLE AS 'SELECT $1 * 2'"
    )
    loader.execute(
        "CREATE VIEW tap_data.fragile AS"
        " SELECT id, tap_data.bigint_only(amount) AS twice FROM tap_data.users"
    )
    conn = admin(target.pg_db)
    rows_before = final_rows(conn)
    view_before = relation(conn, "fragile")

    failed = target.run(*WIDENING_LOAD)
    assert failed.returncode != 0, failed.stderr[-5000:]
    assert error_naming(failed, "fragile", "drop_cascade"), failed.stderr[-5000:]
    assert column_type(conn, "amount") == BIGINT
    assert final_rows(conn) == rows_before
    assert relation(conn, "fragile") == view_before

    cascaded = target.run(*WIDENING_LOAD, drop_cascade=True)
    assert cascaded.returncode == 0, cascaded.stderr[-5000:]
    assert column_type(conn, "amount") == NUMERIC
    assert amounts(conn) == ROWS_AFTER_WIDENING
    assert relation(conn, "fragile") is None
    assert drop_logged(cascaded, "fragile"), cascaded.stderr[-5000:]


def test_view_on_an_unchanged_column_does_not_block(target: Target) -> None:
    """§8: only objects depending on the altered column matter; another role's view on `name`
    neither blocks widening `amount` nor is touched by it."""
    target.load(*FIRST_LOAD)
    conn = admin(target.pg_db)
    conn.execute("CREATE VIEW tap_data.just_names AS SELECT id, name FROM tap_data.users")
    view_before = relation(conn, "just_names")

    run = target.run(*WIDENING_LOAD)
    assert run.returncode == 0, run.stderr[-5000:]
    assert column_type(conn, "amount") == NUMERIC
    assert amounts(conn) == ROWS_AFTER_WIDENING
    assert relation(conn, "just_names") == view_before, "the view was dropped or changed"
    assert [(r["id"], r["name"]) for r in final_rows(conn, "just_names")] == [
        (1, "ann"),
        (2, "bob"),
        (3, "cy"),
    ]


# --------------------------------------------------------------------------- §4.2 layout after §7


@pytest.mark.parametrize("second_run", [False, True], ids=["same_run", "second_run"])
def test_added_column_is_added_in_place(target: Target, second_run: bool) -> None:
    """§7: a new property adds a nullable column with ADD COLUMN, without rebuilding the table,
    so it lands after the `_airbyte_*` columns of an existing table (a table created with the
    property has it among the property columns, §4.2). The property columns keep schema order."""
    before = users_schema({"id": INTEGER, "name": STRING})
    after = users_schema({"id": INTEGER, "name": STRING, "email": STRING})
    if second_run:
        target.load(before, user({"id": 1, "name": "ann"}))
        target.load(after, user({"id": 2, "name": "bob", "email": "b@example.com"}))
    else:
        target.load(
            before,
            user({"id": 1, "name": "ann"}),
            after,
            user({"id": 2, "name": "bob", "email": "b@example.com"}),
        )
    conn = admin(target.pg_db)
    assert [(name, kind) for name, kind, _ in columns(conn)] == [
        ("id", BIGINT),
        ("name", VARCHAR),
        *META_COLUMNS,
        ("email", VARCHAR),
    ]
    assert [(r["id"], r["email"]) for r in final_rows(conn)] == [(1, None), (2, "b@example.com")]
