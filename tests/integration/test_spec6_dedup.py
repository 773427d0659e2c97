"""SPEC §2 (`load_method`, `stream_load_methods`, `cdc_deletion_mode`), §4.2 and §6.2/§6.3:
which records end up in the final table of an append or append-dedup stream, end to end through
the real CLI.

Every record sent carries a unique label in its `v` property, so a final row can be traced back
to the one record it must be the typed copy of (and to that record's raw row)."""

from __future__ import annotations

import json
import time as clock
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg.types.json import set_json_loads
from servers import PgDatabase

from .targetrun import META_COLUMNS as META_LAYOUT
from .targetrun import (
    Run,
    messages,
    raw_rows,
    record,
    run_target,
    schema_message,
    users_stream,
    wait_for_no_loader,
)

pytestmark = pytest.mark.integration

SCHEMA = "tap_data"
RAW_SCHEMA = "airbyte_internal"
META_COLUMNS = [name for name, _ in META_LAYOUT]
UTC = timezone.utc

# time_extracted values, oldest first.
T0 = "2023-12-31T00:00:00Z"
T1 = "2024-01-01T00:00:00Z"
T2 = "2024-01-02T00:00:00Z"
T3 = "2024-01-03T00:00:00Z"
T4 = "2024-01-04T00:00:00Z"
DELETED = "2024-02-01T12:00:00Z"
DELETED_AGAIN = "2024-02-02T12:00:00+01:00"


# --------------------------------------------------------------------------- expected values

Convert = Callable[[Any], Any]


def as_int(value: Any) -> Any:
    return None if value is None else int(value)


def as_str(value: Any) -> Any:
    return None if value is None else str(value)


def as_decimal(value: Any) -> Any:
    return None if value is None else Decimal(str(value))


def as_instant(value: Any) -> Any:
    """An ISO 8601 text as the aware datetime a TIMESTAMPTZ column reads back as."""
    if value is None:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def assert_same(actual: Any, expected: Any, where: str) -> None:
    """Equal and of the same Python type; datetimes both aware."""
    assert type(actual) is type(expected), f"{where}: {actual!r} is not like {expected!r}"
    assert actual == expected, f"{where}: {actual!r} != {expected!r}"
    if isinstance(expected, datetime):
        assert actual.tzinfo is not None, f"{where}: {actual!r} is naive"


def json_line(item: dict[str, Any]) -> str:
    """A message as JSON, Decimal values as JSON numbers written exactly."""
    marker = "@@DECIMAL@@"
    text = json.dumps(
        item, default=lambda v: f"{marker}{v}{marker}" if isinstance(v, Decimal) else str(v)
    )
    return text.replace(f'"{marker}', "").replace(f'{marker}"', "")


def cursor_schema(
    stream: str, properties: dict[str, Any], keys: list[str], cursor: str | None = None
) -> dict[str, Any]:
    """A SCHEMA message, with `bookmark_properties: [cursor]` when a cursor is given."""
    message = schema_message(stream, properties, keys)
    if cursor is not None:
        message["bookmark_properties"] = [cursor]
    return message


def raw_table(stream: str) -> str:
    return f"{SCHEMA}_raw__stream_{stream}"


# --------------------------------------------------------------------------- the target


class Target:
    """Runs the target into one test database, remembers what was sent, checks what is there."""

    def __init__(self, pg_db: PgDatabase, tmp_path: Path) -> None:
        self.pg_db = pg_db
        self.tmp_path = tmp_path
        self.runs = 0
        self.sent: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.conn = pg_db.admin()
        set_json_loads(lambda text: json.loads(text, parse_float=Decimal), self.conn)

    def run(self, *items: dict[str, Any], **settings: Any) -> Run:
        """One run with these messages and settings; it must succeed."""
        self.runs += 1
        config = self.pg_db.config(schema=SCHEMA, **settings)
        text = messages(*[json_line(item) for item in items])
        done = run_target(config, text, self.tmp_path / f"run{self.runs}")
        assert done.returncode == 0, done.stderr
        for item in items:
            if item["type"] == "RECORD":
                self.sent[item["stream"]].append(item)
        return done

    def rows(self, stream: str) -> list[dict[str, Any]]:
        with self.conn.cursor(row_factory=dict_row) as cursor:
            cursor.execute(
                psycopg.sql.SQL("SELECT * FROM {}").format(psycopg.sql.Identifier(SCHEMA, stream))
            )
            return cursor.fetchall()

    def check(self, stream: str, types: dict[str, Convert], winners: list[dict[str, Any]]) -> None:
        """The final table of `stream` holds exactly one typed copy of each record in `winners`
        (RECORD messages), column by column, and nothing else; its raw table holds every record
        ever sent for the stream."""
        self.check_raw(stream)
        got_columns = [
            name
            for (name,) in self.conn.execute(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
                (SCHEMA, stream),
            ).fetchall()
        ]
        assert got_columns == [*types, *META_COLUMNS], f"{stream}: columns {got_columns}"
        rows = self.rows(stream)
        got = sorted(str(row["v"]) for row in rows)
        want = sorted(message["record"]["v"] for message in winners)
        assert got == want, f"{stream}: final rows {got}, expected {want}"
        raw = {row[0]: row for row in raw_rows(self.conn, raw_table(stream), RAW_SCHEMA)}
        by_label = {message["record"]["v"]: message for message in winners}
        for row in rows:
            message = by_label[row["v"]]
            where = f"{stream} row {row['v']}"
            for name, convert in types.items():
                assert_same(row[name], convert(message["record"].get(name)), f"{where}: {name}")
            extracted = as_instant(message["time_extracted"])
            assert_same(row["_airbyte_extracted_at"], extracted, f"{where}: _airbyte_extracted_at")
            raw_row = raw.get(row["_airbyte_raw_id"])
            assert raw_row is not None, f"{where}: _airbyte_raw_id {row['_airbyte_raw_id']!r}"
            assert raw_row[3] == message["record"], f"{where}: raw row is {raw_row[3]}"
            assert raw_row[1] == extracted, where
            assert row["_airbyte_meta"] == raw_row[4], f"{where}: {row['_airbyte_meta']}"
            assert row["_airbyte_meta"]["changes"] == [], f"{where}: {row['_airbyte_meta']}"
            assert_same(row["_airbyte_generation_id"], 0, f"{where}: _airbyte_generation_id")

    def check_raw(self, stream: str) -> None:
        """Every record ever sent for `stream` has its own raw row, typed (§4.1, §6.3)."""
        sent = self.sent[stream]
        raw = raw_rows(self.conn, raw_table(stream), RAW_SCHEMA)
        assert len(raw) == len(sent), f"{stream}: {len(raw)} raw rows for {len(sent)} records"
        labels = Counter(row[3].get("v") for row in raw)
        assert labels == Counter(message["record"]["v"] for message in sent), stream
        by_label = {message["record"]["v"]: message for message in sent}
        for row in raw:
            message = by_label[row[3]["v"]]
            assert row[3] == message["record"], f"{stream}: raw {row[3]}"
            assert row[1] == as_instant(message["time_extracted"]), f"{stream}: raw {row[3]}"
            assert row[2] is not None, f"{stream}: raw row {row[3]} was never typed"

    def unique_keys(self, stream: str) -> list[list[str]]:
        """The column lists of the final table's unique indexes."""
        return [
            list(names)
            for (names,) in self.conn.execute(
                "SELECT array(SELECT a.attname::text FROM unnest(i.indkey) WITH ORDINALITY"
                " AS k(attnum, n) JOIN pg_attribute AS a"
                " ON a.attrelid = i.indrelid AND a.attnum = k.attnum ORDER BY k.n)"
                " FROM pg_index AS i WHERE i.indrelid = %s::regclass AND i.indisunique",
                (psycopg.sql.Identifier(SCHEMA, stream).as_string(self.conn),),
            ).fetchall()
        ]

    def writes(self, stream: str, at_least: int) -> tuple[int, int, int]:
        """(inserted, updated, deleted) tuples of the final table per the statistics collector,
        once they include at least `at_least` inserts+updates and have settled."""
        deadline = clock.monotonic() + 10
        last: tuple[int, int, int] | None = None
        settled = clock.monotonic()
        while True:
            self.conn.execute("SELECT pg_stat_clear_snapshot()")
            row = self.conn.execute(
                "SELECT n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables"
                " WHERE schemaname = %s AND relname = %s",
                (SCHEMA, stream),
            ).fetchone()
            now = (int(row[0]), int(row[1]), int(row[2])) if row else (0, 0, 0)
            if now != last:
                last, settled = now, clock.monotonic()
            elif now[0] + now[1] >= at_least and clock.monotonic() - settled >= 0.5:
                return now
            if clock.monotonic() > deadline:
                return now
            clock.sleep(0.05)


@pytest.fixture
def target(pg_db: PgDatabase, tmp_path: Path) -> Target:
    return Target(pg_db, tmp_path)


# --------------------------------------------------------------------------- §2 load_method

PLAIN = {"id": {"type": "integer"}, "v": {"type": "string"}}
PLAIN_TYPES: dict[str, Convert] = {"id": as_int, "v": as_str}


def test_default_load_method_dedups_keyed_streams_and_appends_the_others(target: Target) -> None:
    """§2: no load_method = append-dedup with key properties, else append."""
    properties = {**PLAIN, "amount": {"type": "number"}}
    types = {**PLAIN_TYPES, "amount": as_decimal}
    users = [
        record("users", {"id": 1, "v": "u1", "amount": Decimal("1.10")}, T1),
        record("users", {"id": 2, "v": "u2", "amount": Decimal("2")}, T1),
        record("users", {"id": 1, "v": "u3", "amount": Decimal("-0.000000000000000000001")}, T2),
        record("users", {"id": 3, "v": "u4", "amount": Decimal("12345678901234567890.5")}, T1),
        record("users", {"id": 1, "v": "u5", "amount": Decimal("5.5")}, T3),
    ]
    events = [
        record("events", {"id": 1, "v": "e1", "amount": Decimal("1")}, T1),
        record("events", {"id": 1, "v": "e2", "amount": Decimal("1")}, T1),
        record("events", {"id": 2, "v": "e3", "amount": Decimal("2.25")}, T2),
        record("events", {"id": 1, "v": "e4", "amount": Decimal("0.1")}, T0),
    ]
    target.run(
        schema_message("users", properties, ["id"]),
        schema_message("events", properties),
        *users,
        *events,
    )
    target.check("users", types, [users[4], users[1], users[3]])
    target.check("events", types, events)
    assert target.unique_keys("users") == [["id"]]


def test_load_method_and_stream_overrides_and_sdk_aliases(target: Target) -> None:
    """§2: `load_method: append` keeps every record of a keyed stream; `stream_load_methods`
    overrides the global method for its stream only; `append-only`/`upsert` are aliases."""

    def pair(stream: str) -> list[dict[str, Any]]:
        return [
            record(stream, {"id": 1, "v": f"{stream}-a"}, T1),
            record(stream, {"id": 2, "v": f"{stream}-b"}, T1),
            record(stream, {"id": 1, "v": f"{stream}-c"}, T2),
        ]

    # Global append on a keyed stream.
    clients = pair("clients")
    target.run(schema_message("clients", PLAIN, ["id"]), *clients, load_method="append")
    target.check("clients", PLAIN_TYPES, clients)

    # Global append-dedup, "users" overridden to append, "accounts" keeps the global method.
    users, accounts = pair("users"), pair("accounts")
    target.run(
        schema_message("users", PLAIN, ["id"]),
        schema_message("accounts", PLAIN, ["id"]),
        *users,
        *accounts,
        load_method="append-dedup",
        stream_load_methods={"users": "append"},
    )
    target.check("users", PLAIN_TYPES, users)
    target.check("accounts", PLAIN_TYPES, accounts[1:])

    # The SDK's names: append-only globally, upsert for "orders".
    orders, items = pair("orders"), pair("items")
    target.run(
        schema_message("orders", PLAIN, ["id"]),
        schema_message("items", PLAIN, ["id"]),
        *orders,
        *items,
        load_method="append-only",
        stream_load_methods={"orders": "upsert"},
    )
    target.check("orders", PLAIN_TYPES, orders[1:])
    target.check("items", PLAIN_TYPES, items)
    # Streams of earlier runs are untouched.
    target.check("clients", PLAIN_TYPES, clients)
    target.check("accounts", PLAIN_TYPES, accounts[1:])


@pytest.mark.parametrize(
    ("settings", "setting"),
    [
        ({"load_method": "merge"}, "load_method"),
        ({"stream_load_methods": {"users": "merge"}}, "stream_load_methods"),
        ({"cdc_deletion_mode": "archive"}, "cdc_deletion_mode"),
    ],
    ids=["load_method", "stream_load_methods", "cdc_deletion_mode"],
)
def test_bad_load_settings_stop_before_loading(
    pg_db: PgDatabase, tmp_path: Path, settings: dict[str, Any], setting: str
) -> None:
    """§2: a bad config ends the run (exit ≠ 0) with one message naming the setting; nothing
    is loaded and no state is emitted."""
    run = run_target(pg_db.config(schema=SCHEMA, **settings), users_stream(2), tmp_path)
    assert run.returncode != 0
    errors = run.error_lines()
    assert len(errors) == 1, run.stderr
    assert setting in errors[0], errors
    assert "Traceback" not in run.stderr
    assert run.stdout.strip() == ""
    tables = (
        pg_db.admin()
        .execute(
            "SELECT table_schema, table_name FROM information_schema.tables"
            " WHERE table_schema IN (%s, %s)",
            (SCHEMA, RAW_SCHEMA),
        )
        .fetchall()
    )
    assert tables == []


# --------------------------------------------------------------------------- §6.3 winner rules

INT_CURSOR = {
    "id": {"type": "integer"},
    "updated_at": {"type": ["integer", "null"]},
    "v": {"type": "string"},
}
INT_CURSOR_TYPES: dict[str, Convert] = {"id": as_int, "updated_at": as_int, "v": as_str}
TS_CURSOR = {
    "id": {"type": "integer"},
    "updated_at": {"type": ["string", "null"], "format": "date-time"},
    "v": {"type": "string"},
}
TS_CURSOR_TYPES: dict[str, Convert] = {"id": as_int, "updated_at": as_instant, "v": as_str}

#: (id, cursor, time_extracted, label) sent first, then (…) sent second; the label of the
#: record that must win ends in "+".
INT_CASES = [
    # greatest cursor wins although it arrives first and was extracted earlier
    ((1, 5, T1, "1a+"), (1, 3, T3, "1b")),
    # a NULL cursor loses to a non-NULL one, whatever the order
    ((2, 1, T1, "2a+"), (2, None, T3, "2b")),
    ((3, None, T3, "3a"), (3, 2, T1, "3b+")),
    # equal cursors: the latest time_extracted wins, else the later arrival
    ((4, 7, T2, "4a+"), (4, 7, T1, "4b")),
    ((5, 7, T1, "5a"), (5, 7, T1, "5b+")),
    # both NULL: time_extracted, then arrival
    ((6, None, T2, "6a+"), (6, None, T1, "6b")),
    ((7, None, T1, "7a"), (7, None, T1, "7b+")),
    # an ordinary update
    ((8, 2, T1, "8a"), (8, 9, T1, "8b+")),
    # integers compare as numbers, not as text ("9" > "10")
    ((9, 10, T1, "9a+"), (9, 9, T3, "9b")),
]
#: Date-time cursors compare as instants: 10:00+02:00 is 08:00Z, before 09:30Z.
TS_CASES = [
    ((1, "2024-01-01T09:30:00Z", T1, "1a+"), (1, "2024-01-01T10:00:00+02:00", T3, "1b")),
    ((2, "2024-01-01T10:00:00+02:00", T3, "2a"), (2, "2024-01-01T09:30:00Z", T1, "2b+")),
    # the same instant written two ways: equal cursors, so time_extracted decides
    ((3, "2024-01-01T08:00:00Z", T2, "3a+"), (3, "2024-01-01T10:00:00+02:00", T1, "3b")),
]
#: No bookmark_properties: time_extracted, then arrival.
PLAIN_CASES = [
    ((1, T2, "1a+"), (1, T1, "1b")),
    ((2, T1, "2a"), (2, T1, "2b+")),
    ((3, T1, "3a"), (3, T2, "3b+")),
]


def winner_messages() -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """(SCHEMA messages, first wave, second wave); each key has one record in each wave."""
    schemas = [
        cursor_schema("users", INT_CURSOR, ["id"], "updated_at"),
        cursor_schema("events", TS_CURSOR, ["id"], "updated_at"),
        cursor_schema("plain", PLAIN, ["id"]),
    ]
    waves: tuple[list[dict[str, Any]], list[dict[str, Any]]] = ([], [])
    for stream, cases in (("users", INT_CASES), ("events", TS_CASES)):
        for case in cases:
            for wave, (key, cursor, extracted, label) in zip(waves, case, strict=True):
                data = {"id": key, "updated_at": cursor, "v": f"{stream}-{label}"}
                wave.append(record(stream, data, extracted))
    for plain_case in PLAIN_CASES:
        for wave, (key, extracted, label) in zip(waves, plain_case, strict=True):
            wave.append(record("plain", {"id": key, "v": f"plain-{label}"}, extracted))
    return schemas, *waves


def winners(stream: str, *waves: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        m for wave in waves for m in wave if m["stream"] == stream and m["record"]["v"][-1] == "+"
    ]


@pytest.mark.parametrize("mode", ["one_batch", "small_batches", "two_runs"])
def test_winner_rules(target: Target, mode: str) -> None:
    """§6.3: greatest cursor (first bookmark property; NULL loses), then latest time_extracted,
    then latest arrival — within a batch, across batches, and against rows already loaded."""
    schemas, first, second = winner_messages()
    if mode == "one_batch":
        target.run(*schemas, *first, *second)
    elif mode == "small_batches":
        target.run(*schemas, *first, *second, batch_size_rows=2)
    else:
        target.run(*schemas, *first)
        target.check("users", INT_CURSOR_TYPES, [m for m in first if m["stream"] == "users"])
        target.run(*schemas, *second)
    target.check("users", INT_CURSOR_TYPES, winners("users", first, second))
    target.check("events", TS_CURSOR_TYPES, winners("events", first, second))
    target.check("plain", PLAIN_TYPES, winners("plain", first, second))
    # Spelled out for the date-time cursor: compared (and stored) as instants.
    events = {row["id"]: row["updated_at"] for row in target.rows("events")}
    assert events == {
        1: datetime(2024, 1, 1, 9, 30, tzinfo=UTC),
        2: datetime(2024, 1, 1, 9, 30, tzinfo=UTC),
        3: datetime(2024, 1, 1, 8, 0, tzinfo=UTC),
    }


def test_each_row_is_written_once(target: Target) -> None:
    """§6.3 "each row written once": the losers of a batch never reach the final table, a
    winner is inserted or updated once, and a record that loses to a loaded row writes nothing.
    Counted by the statistics collector (rolled-back writes count: they were written)."""
    first = [
        record("users", {"id": 1, "v": "a"}, T1),
        record("users", {"id": 2, "v": "b"}, T1),
        record("users", {"id": 1, "v": "c"}, T2),
        record("users", {"id": 3, "v": "d"}, T1),
        record("users", {"id": 1, "v": "e"}, T3),
    ]
    events = [record("events", {"id": 1, "v": f"e{i}"}, T1) for i in range(4)]
    target.run(
        schema_message("users", PLAIN, ["id"]), schema_message("events", PLAIN), *first, *events
    )
    target.check("users", PLAIN_TYPES, [first[4], first[1], first[3]])
    target.check("events", PLAIN_TYPES, events)
    assert target.writes("events", 4) == (4, 0, 0), "events: (inserted, updated, deleted)"
    users = target.writes("users", 3)
    # Into an empty table the first batch tries a plain COPY; a key met twice rolls it back
    # before anything is committed, and the batch is merged instead. Losers are never
    # committed, and nothing is inserted to be deleted later.
    assert users[1:] == (0, 0), f"users, first run: (inserted, updated, deleted) = {users}"
    assert users[0] in (3, 3 + len(first)), users
    second = [
        record("users", {"id": 2, "v": "f"}, T2),  # newer: one update
        record("users", {"id": 3, "v": "g"}, T0),  # older than the loaded row: no write
        record("users", {"id": 4, "v": "h"}, T1),  # new key: one insert
    ]
    target.run(schema_message("users", PLAIN, ["id"]), *second)
    target.check("users", PLAIN_TYPES, [first[4], second[0], first[3], second[2]])
    after = target.writes("users", users[0] + users[1] + 2)
    delta = tuple(now - before for now, before in zip(after, users, strict=True))
    assert delta == (1, 1, 0), (
        f"users, second run: (inserted, updated, deleted) = {delta} for 1 new key, 1 newer"
        " record and 1 older one (rolled-back inserts included): a table with rows is merged"
        " into from the first batch, never written speculatively"
    )


# --------------------------------------------------------------------------- keys

NULLABLE_KEY = {"id": {"type": ["integer", "null"]}, "v": {"type": "string"}}
PAIR = {
    "a": {"type": ["integer", "null"]},
    "b": {"type": ["integer", "null"]},
    "v": {"type": "string"},
}
PAIR_TYPES: dict[str, Convert] = {"a": as_int, "b": as_int, "v": as_str}


def test_null_key_components_compare_equal(target: Target) -> None:
    """§6.3: NULL key components compare equal, in a batch and against loaded rows."""
    single = [
        record("single", {"id": None, "v": "n1"}, T1),
        record("single", {"id": None, "v": "n2"}, T2),
        record("single", {"id": 1, "v": "one"}, T1),
    ]
    pair = [
        record("pair", {"a": 1, "b": None, "v": "p1"}, T1),
        record("pair", {"a": 1, "b": None, "v": "p2"}, T2),
        record("pair", {"a": 1, "b": 2, "v": "p3"}, T1),
        record("pair", {"a": None, "b": None, "v": "p4"}, T2),
        record("pair", {"a": None, "b": None, "v": "p5"}, T1),
        record("pair", {"a": None, "b": 2, "v": "p6"}, T1),
    ]
    schemas = [
        schema_message("single", NULLABLE_KEY, ["id"]),
        schema_message("pair", PAIR, ["a", "b"]),
    ]
    target.run(*schemas, *single, *pair)
    target.check("single", PLAIN_TYPES, [single[1], single[2]])
    target.check("pair", PAIR_TYPES, [pair[1], pair[2], pair[3], pair[5]])

    single2 = [record("single", {"id": None, "v": "n3"}, T3)]
    pair2 = [
        record("pair", {"a": 1, "b": None, "v": "p7"}, T3),
        record("pair", {"a": None, "b": None, "v": "p8"}, T0),
        record("pair", {"a": 1, "b": 2, "v": "p9"}, T3),
    ]
    target.run(*schemas, *single2, *pair2)
    target.check("single", PLAIN_TYPES, [single2[0], single[2]])
    target.check("pair", PAIR_TYPES, [pair2[0], pair2[2], pair[3], pair[5]])


def test_composite_key_keeps_one_row_per_combination(target: Target) -> None:
    """§6.3: one row per (store, sku); §4.2: a unique index on the key columns."""
    properties = {
        "store": {"type": "string"},
        "sku": {"type": "integer"},
        "qty": {"type": "number"},
        "v": {"type": "string"},
    }
    types: dict[str, Convert] = {"store": as_str, "sku": as_int, "qty": as_decimal, "v": as_str}
    stock = [
        record("stock", {"store": "a", "sku": 1, "qty": Decimal("1"), "v": "s1"}, T1),
        record("stock", {"store": "a", "sku": 2, "qty": Decimal("2.5"), "v": "s2"}, T1),
        record("stock", {"store": "b", "sku": 1, "qty": Decimal("3"), "v": "s3"}, T1),
        record("stock", {"store": "a", "sku": 1, "qty": Decimal("4.75"), "v": "s4"}, T2),
        # would collide if the key were concatenated text
        record("stock", {"store": "a", "sku": 12, "qty": Decimal("6"), "v": "s5"}, T1),
        record("stock", {"store": "a1", "sku": 2, "qty": Decimal("7"), "v": "s6"}, T1),
        record("stock", {"store": "b", "sku": 1, "qty": Decimal("0"), "v": "s7"}, T0),
    ]
    target.run(schema_message("stock", properties, ["store", "sku"]), *stock)
    target.check("stock", types, [stock[3], stock[1], stock[2], stock[4], stock[5]])
    assert target.unique_keys("stock") == [["store", "sku"]]


def test_widening_the_key_between_runs(target: Target) -> None:
    """Run 1 keyed on id, run 2 on (id, region): one row per new key afterwards, and records
    of run 2 dedup by the new key."""
    properties = {"id": {"type": "integer"}, "region": {"type": "string"}, "v": {"type": "string"}}
    types: dict[str, Convert] = {"id": as_int, "region": as_str, "v": as_str}
    first = [
        record("users", {"id": 1, "region": "eu", "v": "a"}, T1),
        record("users", {"id": 1, "region": "us", "v": "b"}, T2),
    ]
    target.run(schema_message("users", properties, ["id"]), *first)
    target.check("users", types, [first[1]])
    second = [
        record("users", {"id": 1, "region": "us", "v": "b2"}, T3),
        record("users", {"id": 1, "region": "eu", "v": "c"}, T1),
        record("users", {"id": 1, "region": "eu", "v": "c2"}, T2),
        record("users", {"id": 2, "region": "us", "v": "d"}, T1),
    ]
    target.run(schema_message("users", properties, ["id", "region"]), *second)
    target.check("users", types, [second[0], second[2], second[3]])
    assert target.unique_keys("users") == [["id", "region"]]


def test_narrowing_the_key_between_runs(target: Target) -> None:
    """Run 1 keyed on (id, region), run 2 on id: rows of run 1 sharing an id collapse to the
    winner, and run 2 dedups against them by id."""
    properties = {"id": {"type": "integer"}, "region": {"type": "string"}, "v": {"type": "string"}}
    types: dict[str, Convert] = {"id": as_int, "region": as_str, "v": as_str}
    first = [
        record("users", {"id": 1, "region": "eu", "v": "a"}, T1),
        record("users", {"id": 1, "region": "us", "v": "b"}, T2),
        record("users", {"id": 2, "region": "eu", "v": "c"}, T1),
    ]
    target.run(schema_message("users", properties, ["id", "region"]), *first)
    target.check("users", types, first)
    second = [
        record("users", {"id": 2, "region": "us", "v": "d"}, T2),
        record("users", {"id": 3, "region": "eu", "v": "e"}, T1),
        record("users", {"id": 1, "region": "asia", "v": "f"}, T0),
    ]
    target.run(schema_message("users", properties, ["id"]), *second)
    target.check("users", types, [first[1], second[0], second[1]])
    assert target.unique_keys("users") == [["id"]]


def test_switching_between_append_dedup_and_append(target: Target) -> None:
    """append-dedup → append: duplicates are then kept; append → append-dedup: the duplicate
    rows already loaded collapse to one winner per key."""
    schema = schema_message("users", PLAIN, ["id"])
    first = [
        record("users", {"id": 1, "v": "a"}, T1),
        record("users", {"id": 1, "v": "b"}, T2),
        record("users", {"id": 2, "v": "x"}, T1),
    ]
    target.run(schema, *first)
    target.check("users", PLAIN_TYPES, first[1:])
    second = [
        record("users", {"id": 1, "v": "c"}, T3),
        record("users", {"id": 1, "v": "d"}, T1),
        record("users", {"id": 2, "v": "y"}, T0),
    ]
    target.run(schema, *second, load_method="append")
    target.check("users", PLAIN_TYPES, [*first[1:], *second])
    third = [
        record("users", {"id": 3, "v": "z"}, T1),
        record("users", {"id": 2, "v": "w"}, T0),
    ]
    target.run(schema, *third)
    target.check("users", PLAIN_TYPES, [second[0], first[2], third[0]])
    assert target.unique_keys("users") == [["id"]]


# --------------------------------------------------------------------------- §6.3 CDC deletes

CDC = {
    "id": {"type": "integer"},
    "updated_at": {"type": "integer"},
    "v": {"type": "string"},
    "_ab_cdc_deleted_at": {"type": ["null", "string"], "format": "date-time"},
}
CDC_TYPES: dict[str, Convert] = {
    "id": as_int,
    "updated_at": as_int,
    "v": as_str,
    "_ab_cdc_deleted_at": as_instant,
}
SDC = {
    "id": {"type": "integer"},
    "v": {"type": "string"},
    "_sdc_deleted_at": {"type": ["null", "string"], "format": "date-time"},
}
SDC_TYPES: dict[str, Convert] = {"id": as_int, "v": as_str, "_sdc_deleted_at": as_instant}


def upsert(key: int, cursor: int, label: str, extracted: str) -> dict[str, Any]:
    return record("users", {"id": key, "updated_at": cursor, "v": label}, extracted)


def delete(
    key: int, cursor: int, label: str, extracted: str, when: str = DELETED
) -> dict[str, Any]:
    data = {"id": key, "updated_at": cursor, "v": label, "_ab_cdc_deleted_at": when}
    return record("users", data, extracted)


def sdc(key: int, label: str, extracted: str, deleted: str | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"id": key, "v": label}
    if deleted is not None:
        data["_sdc_deleted_at"] = deleted
    return record("plain", data, extracted)


def test_hard_delete(target: Target) -> None:
    """§6.3 hard_delete (the default): a delete removes the row; a later record that is older
    cannot bring it back (same run, next run, across batches); a newer one does."""
    schemas = [
        cursor_schema("users", CDC, ["id"], "updated_at"),
        cursor_schema("plain", SDC, ["id"]),
    ]
    u = {
        "1": upsert(1, 1, "1-ins", T1),
        "1d": delete(1, 2, "1-del", T2),
        "2": upsert(2, 1, "2-ins", T1),
        "2d": delete(2, 2, "2-del", T2),
        "2old": upsert(2, 1, "2-old-late", T3),  # smaller cursor, later extraction
        "3": upsert(3, 1, "3-ins", T1),
        "3d": delete(3, 2, "3-del", T2),
        "3new": upsert(3, 3, "3-back", T3),
        "4d": delete(4, 1, "4-del-unseen", T1),
        "5": upsert(5, 1, "5-keep", T1),
        "6": upsert(6, 1, "6-ins", T1),
        "7": upsert(7, 1, "7-ins", T1),
        "7d": delete(7, 2, "7-del", T2),
        "8": upsert(8, 1, "8-ins", T1),
        "8d": delete(8, 2, "8-del", T2),
    }
    p = {
        "1": sdc(1, "p1-ins", T1),
        "1d": sdc(1, "p1-del", T2, DELETED),
        "1old": sdc(1, "p1-old-late", T1),
        "2": sdc(2, "p2-ins", T1),
        "2d": sdc(2, "p2-del", T2, DELETED),
        "2new": sdc(2, "p2-back", T3),
        "3d": sdc(3, "p3-del-unseen", T1, DELETED),
        "4": sdc(4, "p4-keep", T1),
    }
    target.run(*schemas, *u.values(), *p.values())
    target.check("users", CDC_TYPES, [u["3new"], u["5"], u["6"]])
    target.check("plain", SDC_TYPES, [p["2new"], p["4"]])

    # Run 2, two records per batch.
    u2 = {
        "1old": upsert(1, 1, "1-zombie", T4),
        "9": upsert(9, 1, "9-ins", T1),
        "6d": delete(6, 2, "6-del", T2),
        "9d": delete(9, 2, "9-del", T2),
        "7old": upsert(7, 1, "7-zombie", T4),
        "9old": upsert(9, 1, "9-zombie", T3),
        "8new": upsert(8, 3, "8-back", T3),
    }
    p2 = {
        "1old": sdc(1, "p1-zombie", T1),
        "4d": sdc(4, "p4-del", T2, DELETED_AGAIN),
        "2old": sdc(2, "p2-older", T2),
        "5": sdc(5, "p5-ins", T1),
    }
    target.run(*schemas, *u2.values(), *p2.values(), batch_size_rows=2)
    target.check("users", CDC_TYPES, [u["3new"], u["5"], u2["8new"]])
    target.check("plain", SDC_TYPES, [p["2new"], p2["5"]])


def test_soft_delete(target: Target) -> None:
    """§6.3 soft_delete: the delete record is the row, marker set; older records lose to it,
    newer ones replace it."""
    schema = cursor_schema("users", CDC, ["id"], "updated_at")
    u = {
        "1": upsert(1, 1, "1-ins", T1),
        "1d": delete(1, 2, "1-del", T2),
        "2d": delete(2, 1, "2-del-unseen", T1),
        "3": upsert(3, 1, "3-ins", T1),
        "3d": delete(3, 2, "3-del", T2),
        "3old": upsert(3, 1, "3-old-late", T3),
        "4": upsert(4, 1, "4-ins", T1),
        "4d": delete(4, 2, "4-del", T2),
        "4new": upsert(4, 3, "4-back", T3),
    }
    target.run(schema, *u.values(), cdc_deletion_mode="soft_delete")
    target.check("users", CDC_TYPES, [u["1d"], u["2d"], u["3d"], u["4new"]])
    u2 = {
        "1old": upsert(1, 1, "1-zombie", T4),
        "4d": delete(4, 4, "4-del-again", T4, DELETED_AGAIN),
    }
    target.run(schema, *u2.values(), cdc_deletion_mode="soft_delete")
    target.check("users", CDC_TYPES, [u["1d"], u["2d"], u["3d"], u2["4d"]])
    markers = {row["id"]: row["_ab_cdc_deleted_at"] for row in target.rows("users")}
    assert markers == {
        1: datetime(2024, 2, 1, 12, tzinfo=UTC),
        2: datetime(2024, 2, 1, 12, tzinfo=UTC),
        3: datetime(2024, 2, 1, 12, tzinfo=UTC),
        4: datetime(2024, 2, 2, 11, tzinfo=UTC),
    }


def labels_and_markers(target: Target) -> list[tuple[int, str, datetime | None]]:
    return sorted((row["id"], row["v"], row["_ab_cdc_deleted_at"]) for row in target.rows("users"))


@pytest.mark.parametrize("layout", ["raw_and_final", "direct"])
def test_a_hard_delete_holds_whatever_deletion_mode_later_runs_use(
    target: Target, layout: str
) -> None:
    """§6.3: a key removed under hard_delete is not brought back by an older record in a later
    soft_delete run (nor in a later hard_delete one); a newer record still brings it back. The
    reverse switch: a delete kept as a row under soft_delete still beats an older record under
    hard_delete, and a newer delete then removes the key for good."""
    schema = cursor_schema("users", CDC, ["id"], "updated_at")
    deleted = datetime(2024, 2, 1, 12, tzinfo=UTC)
    target.run(
        schema,
        upsert(1, 1, "1-ins", T1),
        delete(1, 2, "1-del", T2),
        upsert(2, 1, "2-ins", T1),
        upsert(3, 1, "3-ins", T1),
        table_layout=layout,
    )
    assert labels_and_markers(target) == [(2, "2-ins", None), (3, "3-ins", None)]
    # soft_delete run: the older record of key 1 stays out; a delete of key 3 is kept as a row.
    target.run(
        schema,
        upsert(1, 1, "1-zombie", T4),
        delete(3, 2, "3-del", T2),
        cdc_deletion_mode="soft_delete",
        table_layout=layout,
        batch_size_rows=1,
    )
    assert labels_and_markers(target) == [(2, "2-ins", None), (3, "3-del", deleted)]
    # hard_delete run: an older record loses to the kept delete; a newer delete removes key 3.
    target.run(
        schema,
        upsert(3, 1, "3-zombie", T4),
        upsert(1, 1, "1-zombie-again", T4),
        table_layout=layout,
    )
    assert labels_and_markers(target) == [(2, "2-ins", None), (3, "3-del", deleted)]
    target.run(schema, delete(3, 3, "3-del-hard", T3), table_layout=layout)
    assert labels_and_markers(target) == [(2, "2-ins", None)]
    # soft_delete again: older records of both removed keys stay out, a newer one comes back.
    target.run(
        schema,
        upsert(3, 2, "3-zombie-soft", T4),
        upsert(1, 1, "1-zombie-soft", T4),
        upsert(1, 3, "1-back", T3),
        cdc_deletion_mode="soft_delete",
        table_layout=layout,
    )
    assert labels_and_markers(target) == [(1, "1-back", None), (2, "2-ins", None)]


@pytest.mark.parametrize("layout", ["raw_and_final", "direct"])
def test_a_full_refresh_ends_the_keys_removed_before_it(target: Target, layout: str) -> None:
    """§6.1, §6.3: once a full refresh has replaced the table, it holds exactly that load, so a
    key removed by an earlier hard delete and brought back by the load then competes with the
    load's row alone: a later record newer than that row wins, even if older than the delete."""
    schema = cursor_schema("users", CDC, ["id"], "updated_at")
    target.run(schema, upsert(1, 1, "1-ins", T1), delete(1, 5, "1-del", T2), table_layout=layout)
    assert labels_and_markers(target) == []
    target.run(schema, upsert(1, 1, "1-reload", T1), load_method="overwrite", table_layout=layout)
    assert labels_and_markers(target) == [(1, "1-reload", None)]
    target.run(schema, upsert(1, 2, "1-newer", T3), table_layout=layout)
    assert labels_and_markers(target) == [(1, "1-newer", None)]


def test_append_keeps_delete_records_as_rows(target: Target) -> None:
    """§6.2: in append mode every record is a row; a delete keeps its marker."""
    u = [
        upsert(1, 1, "1-ins", T1),
        delete(1, 2, "1-del", T2),
        upsert(1, 3, "1-back", T3),
        delete(2, 1, "2-del-unseen", T1),
        upsert(1, 1, "1-old-late", T4),
    ]
    p = [sdc(1, "p1-ins", T1), sdc(1, "p1-del", T2, DELETED), sdc(1, "p1-old-late", T1)]
    target.run(
        cursor_schema("users", CDC, ["id"], "updated_at"),
        cursor_schema("plain", SDC, []),
        *u,
        *p,
        load_method="append",
    )
    target.check("users", CDC_TYPES, u)
    target.check("plain", SDC_TYPES, p)


def catalog_rows_inserted(admin: psycopg.Connection[Any]) -> int:
    """Rows inserted into pg_class in the current database, per the statistics (flushed by the
    target's sessions when they end)."""
    admin.execute("SELECT pg_stat_clear_snapshot()")
    found = admin.execute(
        "SELECT n_tup_ins FROM pg_stat_sys_tables WHERE relname = 'pg_class'"
    ).fetchone()
    assert found is not None
    return int(found[0])


@pytest.mark.parametrize("deletes", [False, True], ids=["upserts", "upserts-with-deletes"])
def test_upsert_batches_reuse_their_session_tables(
    pg_db: PgDatabase, tmp_path: Path, deletes: bool
) -> None:
    """Every batch below meets existing keys, so each is staged and merged; its staging (and
    winners) tables are the session's, created once, not once per batch, so a long run does
    not fill the catalog. Before, 60 batches created about 3 pg_class rows each."""
    properties = {"id": {"type": "integer"}, "v": {"type": "integer"}}
    if deletes:
        properties["_sdc_deleted_at"] = {"type": ["string", "null"]}
    schema = schema_message("items", properties, ["id"])
    first = run_target(
        pg_db.config(schema="tap"), messages(schema, record("items", {"id": 1, "v": 0})), tmp_path
    )
    assert first.returncode == 0, first.stderr
    admin = pg_db.admin()
    wait_for_no_loader(admin, pg_db.role.name)
    before = catalog_rows_inserted(admin)
    records = [
        record(
            "items",
            {"id": 1 + n % 2, "v": n, **({"_sdc_deleted_at": None} if deletes else {})},
        )
        for n in range(1, 61)
    ]
    done = run_target(
        pg_db.config(schema="tap", batch_size_rows=1),
        messages(schema, *records, {"type": "STATE", "value": {"n": 60}}),
        tmp_path / "2",
    )
    assert done.returncode == 0, done.stderr
    wait_for_no_loader(admin, pg_db.role.name)
    assert admin.execute("SELECT id, v FROM tap.items ORDER BY id").fetchall() == [(1, 60), (2, 59)]
    inserted = catalog_rows_inserted(admin) - before
    assert inserted < 40, f"{inserted} pg_class rows inserted by 60 upsert batches"
