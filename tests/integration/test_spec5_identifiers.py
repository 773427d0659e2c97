"""SPEC §5: identifiers of final tables, their columns and raw tables, end to end through the
real CLI."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row
from servers import PgDatabase

from .targetrun import META_COLUMNS as META_LAYOUT
from .targetrun import messages, raw_rows, record, run_target, schema_message

pytestmark = pytest.mark.integration

SCHEMA = "tap_data"
RAW_SCHEMA = "airbyte_internal"
META_COLUMNS = [name for name, _ in META_LAYOUT]
HASHED = re.compile(r"_[0-9a-f]{8}$")
SAFE_NAME = re.compile(r"^\w+$")


# --------------------------------------------------------------------------- helpers


def load(pg_db: PgDatabase, workdir: Path, *items: dict[str, Any]) -> str:
    """Run the target into schema tap_data, insist it succeeded, return its log."""
    run = run_target(pg_db.config(schema=SCHEMA), messages(*items), workdir)
    assert run.returncode == 0, run.stderr
    return run.stderr


def column_names(conn: psycopg.Connection[Any], schema: str, table: str) -> list[str]:
    return [
        name
        for (name,) in conn.execute(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
            (schema, table),
        ).fetchall()
    ]


def column_of(conn: psycopg.Connection[Any], schema: str, table: str) -> dict[str, str]:
    """property → column, from the column comments the target wrote."""
    mapping: dict[str, str] = {}
    for name, comment in conn.execute(
        "SELECT a.attname, col_description(a.attrelid, a.attnum) FROM pg_attribute AS a"
        " WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped"
        " ORDER BY a.attnum",
        (str(psycopg.sql.Identifier(schema, table).as_string(conn)),),
    ).fetchall():
        if name in META_COLUMNS:
            continue
        assert comment is not None, f"column {name} has no comment"
        prop = json.loads(comment)["property"]
        assert prop not in mapping, f"two columns for property {prop!r}"
        mapping[prop] = name
    return mapping


def tables_by_stream(conn: psycopg.Connection[Any], schema: str) -> dict[str, str]:
    """stream → table, from the table comments the target wrote."""
    mapping: dict[str, str] = {}
    for name, comment in conn.execute(
        "SELECT c.relname, obj_description(c.oid, 'pg_class') FROM pg_class AS c"
        " JOIN pg_namespace AS n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relkind = 'r'",
        (schema,),
    ).fetchall():
        if comment:
            mapping[json.loads(comment)["stream"]] = name
    return mapping


def rows_of(conn: psycopg.Connection[Any], schema: str, table: str) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cursor:
        cursor.execute(
            psycopg.sql.SQL(
                "SELECT * FROM {} ORDER BY _airbyte_extracted_at, _airbyte_raw_id"
            ).format(psycopg.sql.Identifier(schema, table))
        )
        return cursor.fetchall()


def size(name: str) -> int:
    return len(name.encode("utf-8"))


# --------------------------------------------------------------------------- columns

LONG_E = "é" * 40  # 80 bytes
LONG_CJK = "日本語" * 30  # 270 bytes
LONG_FRAKTUR = "\U0001d518" * 75  # 300 bytes, non-BMP letters
LONG_CYRILLIC = "ж" * 32  # 64 bytes: one too many
LONG_TWIN_1 = "\u03b1" * 40 + "_one"  # the twins share their first 80 bytes
LONG_TWIN_2 = "\u03b1" * 40 + "_two"
FITS = "b" * 63  # exactly 63 bytes: kept as is

PEOPLE: dict[str, Any] = {
    "id": {"type": "integer"},
    "userName": {"type": "string"},
    "first name": {"type": "string"},
    "prénom": {"type": "string"},
    "select": {"type": "string"},
    "order": {"type": "integer"},
    "a-b": {"type": "string"},
    "a_b": {"type": "string"},
    "_airbyte_raw_id": {"type": "string"},
    "_airbyte_meta": {"type": "string"},
    "Ünïcödé Straße": {"type": "string"},
    "MiXeD": {"type": "string"},
    "mixed": {"type": "string"},
    LONG_E: {"type": "string"},
    LONG_CJK: {"type": "string"},
    LONG_FRAKTUR: {"type": "string"},
    LONG_CYRILLIC: {"type": "string"},
    LONG_TWIN_1: {"type": "string"},
    LONG_TWIN_2: {"type": "string"},
    FITS: {"type": "string"},
}

#: Properties whose column name is known exactly.
PLAIN = {
    "id": "id",
    "userName": "userName",
    "first name": "first_name",
    "prénom": "prénom",
    "select": "select",
    "order": "order",
    "a-b": "a_b",  # first in schema order keeps the plain form
    "Ünïcödé Straße": "Ünïcödé_Straße",
    "MiXeD": "MiXeD",
    "mixed": "mixed",
    FITS: FITS,
}


def person(number: int) -> dict[str, Any]:
    data: dict[str, Any] = {
        prop: f"{number}:{prop}" for prop in PEOPLE if PEOPLE[prop]["type"] == "string"
    }
    data["id"] = number
    data["order"] = number * 10
    return data


def test_property_names_become_columns(pg_db: PgDatabase, tmp_path: Path) -> None:
    log = load(
        pg_db,
        tmp_path,
        schema_message("people", PEOPLE),
        record("people", person(1)),
        record("people", person(2)),
    )
    conn = pg_db.admin()
    mapping = column_of(conn, SCHEMA, "people")
    # Every property has its own column, recorded in the column comment.
    assert set(mapping) == set(PEOPLE)
    assert len(set(mapping.values())) == len(PEOPLE)
    for prop, column in PLAIN.items():
        assert mapping[prop] == column, prop
    # Columns in schema order, then the _airbyte_ columns under their own names.
    assert column_names(conn, SCHEMA, "people") == [mapping[p] for p in PEOPLE] + META_COLUMNS
    # Collisions: a suffix inside 63 bytes for the later property; _airbyte_ columns keep theirs.
    for prop in ("a_b", "_airbyte_raw_id", "_airbyte_meta"):
        assert mapping[prop] != prop
        assert mapping[prop].startswith(prop), mapping[prop]
        assert size(mapping[prop]) <= 63
    # Long names: at most 63 bytes, cut on a character boundary, ending with a hash.
    for prop in (LONG_E, LONG_CJK, LONG_FRAKTUR, LONG_CYRILLIC, LONG_TWIN_1, LONG_TWIN_2):
        column = mapping[prop]
        assert size(column) <= 63, column
        assert size(column) > 63 - 4, column  # as long as the character boundary allows
        assert HASHED.search(column), column
        assert prop.startswith(column[:-9]), column
    assert mapping[LONG_TWIN_1] != mapping[LONG_TWIN_2]
    # Values land in the right columns.
    rows = rows_of(conn, SCHEMA, "people")
    assert len(rows) == 2
    for number, row in enumerate(rows, start=1):
        sent = person(number)
        for prop, value in sent.items():
            assert row[mapping[prop]] == value, prop
        assert str(uuid.UUID(row["_airbyte_raw_id"])) == row["_airbyte_raw_id"]
        assert row["_airbyte_meta"]["changes"] == []
    # The raw table keeps the original property names.
    raw = sorted(raw_rows(conn, "tap_data_raw__stream_people"), key=lambda r: r[3]["id"])
    assert [r[3] for r in raw] == [person(1), person(2)]
    assert [r[0] for r in raw] == [row["_airbyte_raw_id"] for row in rows]
    # Every rename is logged once.
    assert log.count(repr("a_b")) >= 1
    for prop in ("first name", LONG_CJK):
        assert sum(repr(prop) in line for line in log.splitlines()) == 1, prop


def test_a_later_run_keeps_every_columns_name(pg_db: PgDatabase, tmp_path: Path) -> None:
    first = {
        "id": {"type": "integer"},
        "first name": {"type": "string"},
        "a-b": {"type": "string"},
        "a_b": {"type": "string"},
        LONG_TWIN_1: {"type": "string"},
        "zeta": {"type": "string"},
    }
    load(
        pg_db,
        tmp_path / "1",
        schema_message("things", first),
        record(
            "things",
            {"id": 1, "first name": "f1", "a-b": "dash1", "a_b": "under1", LONG_TWIN_1: "t1"}
            | {"zeta": "z1"},
        ),
    )
    conn = pg_db.admin()
    before = column_of(conn, SCHEMA, "things")
    order_before = column_names(conn, SCHEMA, "things")
    assert before["a-b"] == "a_b"
    # Second run: reversed order, "a_b" now first in schema order, plus newcomers that collide.
    second = dict(reversed(list(first.items())))
    second["a.b"] = {"type": "string"}
    second[LONG_TWIN_2] = {"type": "string"}
    second["first_name"] = {"type": "string"}
    load(
        pg_db,
        tmp_path / "2",
        schema_message("things", second),
        record(
            "things",
            {"a_b": "under2", "zeta": "z2", LONG_TWIN_1: "t2", "a-b": "dash2", "id": 2}
            | {"first name": "f2", "a.b": "dot2", LONG_TWIN_2: "u2", "first_name": "fn2"},
        ),
    )
    after = column_of(conn, SCHEMA, "things")
    assert {prop: after[prop] for prop in first} == before
    assert column_names(conn, SCHEMA, "things")[: len(order_before)] == order_before
    new_columns = [after["a.b"], after[LONG_TWIN_2], after["first_name"]]
    assert len(set(after.values())) == len(after)
    assert not set(new_columns) & set(before.values())
    assert all(size(column) <= 63 for column in new_columns)
    rows = rows_of(conn, SCHEMA, "things")
    by_column = [{prop: row[column] for prop, column in after.items()} for row in rows]
    assert by_column == [
        {
            "id": 1,
            "first name": "f1",
            "a-b": "dash1",
            "a_b": "under1",
            LONG_TWIN_1: "t1",
            "zeta": "z1",
            "a.b": None,
            LONG_TWIN_2: None,
            "first_name": None,
        },
        {
            "id": 2,
            "first name": "f2",
            "a-b": "dash2",
            "a_b": "under2",
            LONG_TWIN_1: "t2",
            "zeta": "z2",
            "a.b": "dot2",
            LONG_TWIN_2: "u2",
            "first_name": "fn2",
        },
    ]


# --------------------------------------------------------------------------- tables


def test_stream_names_cannot_inject_sql(pg_db: PgDatabase, tmp_path: Path) -> None:
    # The victim is owned by the loader role, so an injected DROP would succeed.
    load(
        pg_db,
        tmp_path / "1",
        schema_message("victim", {"id": {"type": "integer"}}),
        record("victim", {"id": 1}),
    )
    evil_stream = 'users"; DROP TABLE tap_data.victim; --'
    evil_property = "x'); DROP TABLE tap_data.victim; --"
    load(
        pg_db,
        tmp_path / "2",
        schema_message(evil_stream, {"id": {"type": "integer"}, evil_property: {"type": "string"}}),
        record(evil_stream, {"id": 7, evil_property: "payload"}),
    )
    conn = pg_db.admin()
    assert conn.execute("SELECT id FROM tap_data.victim").fetchall() == [(1,)]
    tables = tables_by_stream(conn, SCHEMA)
    assert set(tables) == {"victim", evil_stream}
    table = tables[evil_stream]
    assert SAFE_NAME.match(table), table
    mapping = column_of(conn, SCHEMA, table)
    assert SAFE_NAME.match(mapping[evil_property]), mapping
    rows = rows_of(conn, SCHEMA, table)
    assert [(row["id"], row[mapping[evil_property]]) for row in rows] == [(7, "payload")]
    raw_tables = tables_by_stream(conn, RAW_SCHEMA)
    assert re.fullmatch(r"[a-z0-9_]+", raw_tables[evil_stream]), raw_tables
    assert [r[3] for r in raw_rows(conn, raw_tables[evil_stream])] == [
        {"id": 7, evil_property: "payload"}
    ]


def test_streams_that_conform_to_the_same_name_stay_apart(
    pg_db: PgDatabase, tmp_path: Path
) -> None:
    dot, space = "user.list", "user list"
    properties = {"id": {"type": "integer"}, "src": {"type": "string"}}
    load(
        pg_db,
        tmp_path / "1",
        schema_message(dot, properties),
        schema_message(space, properties),
        record(dot, {"id": 1, "src": "dot"}),
        record(space, {"id": 2, "src": "space"}),
        record(dot, {"id": 3, "src": "dot"}),
    )
    conn = pg_db.admin()
    finals = tables_by_stream(conn, SCHEMA)
    raws = tables_by_stream(conn, RAW_SCHEMA)
    assert finals[dot] == "user_list"  # the first stream keeps the plain form
    assert finals[space] != finals[dot]
    assert finals[space].startswith("user_list")
    assert raws[dot] == "tap_data_raw__stream_user_list"
    assert raws[space] != raws[dot]
    # A second run, other stream first: the mapping holds.
    load(
        pg_db,
        tmp_path / "2",
        schema_message(space, properties),
        schema_message(dot, properties),
        record(space, {"id": 4, "src": "space"}),
        record(dot, {"id": 5, "src": "dot"}),
    )
    assert tables_by_stream(conn, SCHEMA) == finals
    assert tables_by_stream(conn, RAW_SCHEMA) == raws
    for stream, src, ids in ((dot, "dot", [1, 3, 5]), (space, "space", [2, 4])):
        rows = rows_of(conn, SCHEMA, finals[stream])
        assert [(row["id"], row["src"]) for row in rows] == [(i, src) for i in ids], stream
        raw = [r[3] for r in raw_rows(conn, raws[stream])]
        assert sorted(raw, key=lambda d: d["id"]) == [{"id": i, "src": src} for i in ids]


def test_table_and_schema_names(pg_db: PgDatabase, tmp_path: Path) -> None:
    long_stream = "données_clients_" * 5  # 85 bytes
    properties = {"id": {"type": "integer"}, "v": {"type": "string"}}
    for attempt in range(2):
        load(
            pg_db,
            tmp_path / str(attempt),
            schema_message("Café Orders", properties),
            schema_message("Sales-Orders", properties),
            schema_message("9lives-Cats", properties),
            schema_message("x__y", properties),
            schema_message(long_stream, properties, ["id"]),
            record("Café Orders", {"id": 1, "v": f"café{attempt}"}),
            record("Sales-Orders", {"id": 2, "v": f"sales{attempt}"}),
            record("9lives-Cats", {"id": 5, "v": f"cats{attempt}"}),
            record("x__y", {"id": 6, "v": f"xy{attempt}"}),
            record(long_stream, {"id": 3, "v": f"long{attempt}"}),
            record(long_stream, {"id": 4, "v": f"long{attempt}"}),
        )
    conn = pg_db.admin()
    finals = tables_by_stream(conn, SCHEMA)
    assert finals["Café Orders"] == "Café_Orders"
    long_table = finals[long_stream]
    assert size(long_table) <= 63
    assert HASHED.search(long_table), long_table
    assert long_stream.startswith(long_table[:-9])
    # A namespace keeps its case as the final table's schema; raw names are lower case.
    assert tables_by_stream(conn, "Sales") == {"Sales-Orders": "Orders"}
    raws = tables_by_stream(conn, RAW_SCHEMA)
    assert raws["Café Orders"] == "tap_data_raw__stream_caf__orders"
    assert raws["Sales-Orders"] == "sales_raw__stream_orders"
    # A leading digit gets a `_` prefix in raw names only; `__` in a name widens the separator.
    assert tables_by_stream(conn, "9lives") == {"9lives-Cats": "Cats"}
    assert raws["9lives-Cats"] == "_9lives_raw__stream_cats"
    assert finals["x__y"] == "x__y"
    assert raws["x__y"] == "tap_data_raw___stream_x__y"
    assert size(raws[long_stream]) <= 63
    assert re.fullmatch(r"[a-z0-9_]+_[0-9a-f]{8}", raws[long_stream]), raws[long_stream]
    assert [r["v"] for r in rows_of(conn, SCHEMA, "Café_Orders")] == ["café0", "café1"]
    assert [r["v"] for r in rows_of(conn, "Sales", "Orders")] == ["sales0", "sales1"]
    assert [r["v"] for r in rows_of(conn, "9lives", "Cats")] == ["cats0", "cats1"]
    assert [r["v"] for r in rows_of(conn, SCHEMA, "x__y")] == ["xy0", "xy1"]
    # The dedup stream's upsert went through its unique index: one row per id.
    rows = rows_of(conn, SCHEMA, long_table)
    assert sorted((row["id"], row["v"]) for row in rows) == [(3, "long1"), (4, "long1")]
    assert len(raw_rows(conn, raws[long_stream])) == 4
    indexes = conn.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s AND tablename = %s",
        (SCHEMA, long_table),
    ).fetchall()
    assert len(indexes) == 1
    assert indexes[0][1].startswith("CREATE UNIQUE INDEX")
    assert size(indexes[0][0]) <= 63


# --------------------------------------------------------------------------- names that clean alike

LAYOUTS = ["raw_and_final", "direct"]


def truncated(field: str) -> dict[str, str]:
    return {"field": field, "change": "TRUNCATED", "reason": "DESTINATION_SERIALIZATION_ERROR"}


def nulled(field: str) -> dict[str, str]:
    return {"field": field, "change": "NULLED", "reason": "DESTINATION_TYPECAST_ERROR"}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_streams_whose_names_clean_to_one_name_never_share_a_table(
    pg_db: PgDatabase, tmp_path: Path, layout: str
) -> None:
    # "", "_", " " and "-" all become the final table `_`; each stream keeps its own table
    # (the first the plain name), whatever order a later run sends them in (SPEC §5, §6.4).
    streams = ["", "_", " ", "-"]
    properties = {"id": {"type": "integer"}, "src": {"type": "string"}}
    config = pg_db.config(schema=SCHEMA, table_layout=layout, load_method="append-dedup")
    tables: dict[str, str] = {}
    for attempt, order in enumerate((streams, streams[::-1])):
        run = run_target(
            config,
            messages(
                *(schema_message(stream, properties, ["id"]) for stream in order),
                *(record(stream, {"id": 1, "src": f"{stream!r} {attempt}"}) for stream in order),
            ),
            tmp_path / str(attempt),
        )
        assert run.returncode == 0, run.stderr
        conn = pg_db.admin()
        found = tables_by_stream(conn, SCHEMA)
        assert set(found) == set(streams), found
        assert len(set(found.values())) == len(streams), found
        if attempt == 0:
            assert found[""] == "_"
            assert sorted(found[stream] for stream in streams[1:]) == ["__2", "__3", "__4"]
            for stream in streams[1:]:
                assert (
                    f"Streams '' and {stream if stream.strip() else repr(stream)} would share"
                    f" table {SCHEMA}._: stream"
                ) in run.stderr, stream
            tables = found
        else:
            assert found == tables  # the mapping holds across runs
        for stream in streams:
            rows = rows_of(conn, SCHEMA, found[stream])
            assert [(row["id"], row["src"]) for row in rows] == [(1, f"{stream!r} {attempt}")]
            assert rows[0]["_airbyte_meta"]["changes"] == []
        if layout == "raw_and_final":
            raws = tables_by_stream(conn, RAW_SCHEMA)
            assert set(raws) == set(streams)
            assert len(set(raws.values())) == len(streams), raws
            for stream in streams:
                assert [r[3] for r in raw_rows(conn, raws[stream])] == [
                    {"id": 1, "src": f"{stream!r} {number}"} for number in range(attempt + 1)
                ]


#: Properties whose names hold NUL, one of them cleaning to the name of another ("ab"), the
#: key and the cursor among them (SPEC §9: NUL removal never separates a value from its column).
NUL_PROPERTIES: dict[str, Any] = {
    "id": {"type": "integer"},
    "a\x00b": {"type": "string"},
    "ab": {"type": ["string", "null"]},
    "k\x00": {"type": "integer"},
    "c\x00ur": {"type": "integer"},
    "n\x00um": {"type": ["integer", "null"]},
    "obj": {"type": ["object", "null"]},
}
NUL_COLUMNS = {"id": "id", "a\x00b": "a_b", "ab": "ab", "k\x00": "k_", "c\x00ur": "c_ur"}
NUL_RECORDS = [
    {
        "k\x00": 1,
        "id": 1,
        "a\x00b": "xy",
        "ab": "zz",
        "c\x00ur": 1,
        "n\x00um": 5,
        "obj": {"a\x00b": "n"},
    },
    {"k\x00": 2, "id": 2, "a\x00b": "only", "c\x00ur": 1, "n\x00um": "nope"},
    {"k\x00": 1, "id": 3, "a\x00b": "new", "ab": "zz2", "c\x00ur": 2},
    {"k\x00": 2, "id": 4, "a\x00b": "old", "c\x00ur": 0},
]


def nul_schema() -> dict[str, Any]:
    message = schema_message("nul", NUL_PROPERTIES, ["k\x00"])
    message["bookmark_properties"] = ["c\x00ur"]
    return message


@pytest.mark.parametrize("layout", [*LAYOUTS, "raw_only then raw_and_final"])
def test_property_names_holding_nul_keep_their_values(
    pg_db: PgDatabase, tmp_path: Path, layout: str
) -> None:
    first_layout = "raw_only" if layout.startswith("raw_only") else layout
    config = pg_db.config(schema=SCHEMA, table_layout=first_layout, load_method="append-dedup")
    lines = [nul_schema(), *(record("nul", data) for data in NUL_RECORDS)]
    run = run_target(config, messages(*lines), tmp_path / "1")
    assert run.returncode == 0, run.stderr
    if first_layout == "raw_only":
        # A later typed run types the raw rows the raw-only run left: the same final rows.
        config["table_layout"] = "raw_and_final"
        run = run_target(config, messages(nul_schema()), tmp_path / "2")
        assert run.returncode == 0, run.stderr
    conn = pg_db.admin()
    mapping = column_of(conn, SCHEMA, "nul")
    assert mapping == {**NUL_COLUMNS, "n\x00um": "n_um", "obj": "obj"}
    rows = sorted(rows_of(conn, SCHEMA, "nul"), key=lambda row: row["k_"])
    assert [
        {column: row[column] for column in (*NUL_COLUMNS.values(), "n_um", "obj")} for row in rows
    ] == [
        {"id": 3, "a_b": "new", "ab": "zz2", "k_": 1, "c_ur": 2, "n_um": None, "obj": None},
        {"id": 2, "a_b": "only", "ab": None, "k_": 2, "c_ur": 1, "n_um": None, "obj": None},
    ]
    # Changes name the properties as JSONB holds them (NUL removed), once each.
    changes = [sorted(row["_airbyte_meta"]["changes"], key=json.dumps) for row in rows]
    assert changes == [
        sorted([truncated("k"), truncated("ab"), truncated("cur")], key=json.dumps),
        sorted(
            [truncated("k"), truncated("ab"), truncated("cur"), truncated("num"), nulled("num")],
            key=json.dumps,
        ),
    ]
    if layout == "direct":
        return
    # The raw rows keep every value; the property whose cleaned name another property has
    # is kept under that name with a suffix, where typing (now or later) reads it.
    raw = [r[3] for r in raw_rows(conn, "tap_data_raw__stream_nul")]
    assert raw == [
        {"id": 1, "ab": "zz", "obj": {"ab": "n"}, "k": 1, "ab_2": "xy", "cur": 1, "num": 5},
        {"id": 2, "k": 2, "ab_2": "only", "cur": 1, "num": "nope"},
        {"id": 3, "ab": "zz2", "k": 1, "ab_2": "new", "cur": 2},
        {"id": 4, "k": 2, "ab_2": "old", "cur": 0},
    ]


def test_a_key_property_holding_nul_is_named_readably(pg_db: PgDatabase, tmp_path: Path) -> None:
    config = pg_db.config(schema=SCHEMA, load_method="append-dedup")
    for number, data in enumerate(({"id": 1, "k\x00": "x"}, {"id": 1})):
        run = run_target(
            config,
            messages(
                schema_message(
                    "nul", {"id": {"type": "integer"}, "k\x00": {"type": "integer"}}, ["k\x00"]
                ),
                record("nul", data),
            ),
            tmp_path / str(number),
        )
        assert run.returncode == 1, run.stderr
        assert "\x00" not in run.stderr
        assert run.error_lines() == [
            "Input line 2: record of stream nul has key property 'k\\x00' = \"x\", which its key"
            " column cannot hold exactly (a key is never NULLed by typing, or distinct keys"
            " would merge); fix the value at the source, or change the key column's type."
            if number == 0
            else "Input line 2: record of stream nul has no value for key property 'k\\x00'."
        ]
