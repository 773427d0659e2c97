"""SPEC §9, the last sentences of "Every input line is bad input": when the database refuses a
record anyway (a key too long for its index entry, a row too big, a constraint a DBA added, a
stream with more columns than a table can have), the run commits every record of the lines
before that record's line, in every stream, emits the last STATE before it (and none after),
names the stream and the line in one sentence, and a re-run from that STATE with the line fixed
ends with the tables exactly as one uninterrupted run of the fixed input leaves them.

Each case sends 30,010 good records of `users` (3,010 for the wide rows, in batches of 1,000),
with an `events` record after every 1,000th, so a refused batch holds records of many lines
before the bad one, and the other stream's batch holds records from before and after it."""

from __future__ import annotations

import json
import random
import string
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql
from servers import PgDatabase

from .targetrun import messages, record, run_target, schema_message

pytestmark = pytest.mark.integration

RAW_SCHEMA = "airbyte_internal"
AT = "2024-03-01T12:00:00+00:00"
EVENTS = schema_message("events", {"seq": {"type": "integer"}, "what": {"type": "string"}})
#: Columns of a row too big for a page: 1,100 BIGINTs filled are 8,800 bytes (at most 8,160).
WIDE = 1_100


def random_text(length: int) -> str:
    """Text no compression shrinks (the btree entry keeps its size), the same every run."""
    rng = random.Random(25)
    return "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(length))


@dataclass(frozen=True)
class Case:
    """A `users` stream and the record of it the database refuses."""

    properties: dict[str, Any]
    keys: list[str]
    #: The good record number n.
    good: Callable[[int], dict[str, Any]]
    bad: dict[str, Any]
    #: The bad line fixed, for the re-run.
    fixed: dict[str, Any]
    #: Good records before the STATE that precedes the bad line.
    count: int = 30_010
    batch_size_rows: int | None = None
    #: What the database says (in the error sentence).
    reason: str = ""
    #: A constraint a DBA adds to a table before the run: (raw table or not, its SQL).
    constraint: tuple[bool, str] | None = None


CASES: dict[str, Case] = {
    # A dedup key longer than a btree index entry can hold (2,704 bytes).
    "long key": Case(
        properties={"id": {"type": "string"}, "n": {"type": "integer"}},
        keys=["id"],
        good=lambda n: {"id": f"k{n:06}", "n": n},
        bad={"id": random_text(3_000), "n": -1},
        fixed={"id": "k-fixed", "n": -1},
        reason="index row size",
    ),
    # A row the typing lets through that no page can hold.
    "row too big": Case(
        properties={f"c{i:04}": {"type": "integer"} for i in range(WIDE)},
        keys=[],
        good=lambda n: {"c0000": n, "c0001": n * 2},
        bad={f"c{i:04}": i for i in range(WIDE)},
        fixed={"c0000": -1, "c0001": -2},
        count=3_010,
        batch_size_rows=1_000,
        reason="row is too big",
    ),
    # Whatever the database refuses: here a CHECK constraint a DBA added.
    "constraint on the raw table": Case(
        properties={"id": {"type": "integer"}, "name": {"type": "string"}},
        keys=[],
        good=lambda n: {"id": n, "name": f"user {n}"},
        bad={"id": -1, "name": "refused"},
        fixed={"id": -1, "name": "fixed"},
        reason="violates check constraint",
        constraint=(True, "CHECK (_airbyte_data->>'name' IS DISTINCT FROM 'refused')"),
    ),
    "constraint on the final table": Case(
        properties={"id": {"type": "integer"}, "name": {"type": "string"}},
        keys=["id"],
        good=lambda n: {"id": n, "name": f"user {n}"},
        bad={"id": -1, "name": "refused"},
        fixed={"id": -1, "name": "fixed"},
        reason="violates check constraint",
        constraint=(False, "CHECK (name IS DISTINCT FROM 'refused')"),
    ),
}

#: (case, table_layout, load_method).
MATRIX = [
    ("long key", "raw_and_final", "append-dedup"),
    ("long key", "direct", "append-dedup"),
    ("long key", "raw_and_final", "overwrite"),
    ("long key", "direct", "overwrite"),
    ("row too big", "raw_and_final", "append"),
    ("row too big", "direct", "append"),
    ("row too big", "raw_and_final", "overwrite"),
    ("constraint on the raw table", "raw_only", "append"),
    ("constraint on the raw table", "raw_and_final", "append"),
    ("constraint on the final table", "direct", "append-dedup"),
    ("constraint on the final table", "raw_and_final", "append-dedup"),
]


@dataclass(frozen=True)
class Input:
    """The lines of a run, and where the bad one is."""

    text: str
    bad_line: int
    #: events seq numbers sent before the bad line.
    events_before: list[int]


def build(case: Case, bad: dict[str, Any]) -> Input:
    """SCHEMAs; the good records with an events record after every 1,000th; a STATE; the bad
    line; then an events record, one more users record and a STATE, never to be committed."""
    lines: list[dict[str, Any]] = [schema_message("users", case.properties, case.keys), EVENTS]
    events: list[int] = []
    for n in range(1, case.count + 1):
        lines.append(record("users", case.good(n), AT))
        if n % 1_000 == 0:
            events.append(n)
            lines.append(record("events", {"seq": n, "what": f"at {n}"}, AT))
    lines.append({"type": "STATE", "value": {"pos": 1}})
    bad_line = len(lines) + 1
    lines += [
        record("users", bad, AT),
        record("events", {"seq": 999_999, "what": "after"}, AT),
        record("users", case.good(case.count + 1), AT),
        {"type": "STATE", "value": {"pos": 2}},
    ]
    return Input(messages(*lines), bad_line, events)


def resumed_input(case: Case) -> str:
    """What the tap sends again from the STATE {"pos": 1}, the bad line fixed."""
    return messages(
        schema_message("users", case.properties, case.keys),
        EVENTS,
        record("users", case.fixed, AT),
        record("events", {"seq": 999_999, "what": "after"}, AT),
        record("users", case.good(case.count + 1), AT),
        {"type": "STATE", "value": {"pos": 2}},
    )


def table_rows(db: PgDatabase, schema: str, table: str) -> list[dict[str, Any]] | None:
    """Every row of a table (None when there is none), as the user sees it, in a fixed order:
    raw rows by arrival, final rows by content. Raw ids and sync ids differ between runs."""
    conn = db.admin()
    found = conn.execute("SELECT to_regclass(%s)", (f'"{schema}"."{table}"',)).fetchone()
    if found is None or found[0] is None:
        return None
    cursor = conn.execute(
        sql.SQL("SELECT * FROM {} ORDER BY _airbyte_raw_id").format(sql.Identifier(schema, table))
    )
    names = [column.name for column in cursor.description or []]
    rows = []
    for values in cursor.fetchall():
        row = dict(zip(names, values, strict=True))
        row.pop("_airbyte_raw_id")
        row["_airbyte_meta"] = row["_airbyte_meta"]["changes"]
        if "_airbyte_loaded_at" in row:
            row["_airbyte_loaded_at"] = row["_airbyte_loaded_at"] is not None
        rows.append(row)
    if "_airbyte_data" not in names:
        rows.sort(key=lambda row: json.dumps(row, sort_keys=True, default=str))
    return rows


def tables(db: PgDatabase, namespace: str) -> dict[str, list[dict[str, Any]] | None]:
    return {
        f"{where}.{stream}": table_rows(db, *place)
        for stream in ("users", "events")
        for where, place in (
            ("final", (namespace, stream)),
            ("raw", (RAW_SCHEMA, f"{namespace}_raw__stream_{stream}")),
        )
    }


def committed(rows: list[dict[str, Any]] | None, key: str) -> list[Any]:
    """The `key` of each row: from the column, or from a raw row's data."""
    assert rows is not None
    return [row["_airbyte_data"][key] if "_airbyte_data" in row else row[key] for row in rows]


@pytest.mark.parametrize(("name", "layout", "method"), MATRIX)
def test_a_refused_record_keeps_every_line_before_it(
    name: str, layout: str, method: str, pg_db: PgDatabase, tmp_path: Path
) -> None:
    case = CASES[name]
    settings: dict[str, Any] = {"table_layout": layout, "load_method": method}
    if case.batch_size_rows is not None:
        settings["batch_size_rows"] = case.batch_size_rows
    config = pg_db.config(schema="tap", **settings)
    if case.constraint is not None:
        created = run_target(
            config, messages(schema_message("users", case.properties, case.keys)), tmp_path
        )
        assert created.returncode == 0, created.stderr
        on_raw, check = case.constraint
        table = ("airbyte_internal", "tap_raw__stream_users") if on_raw else ("tap", "users")
        pg_db.admin().execute(
            sql.SQL("ALTER TABLE {} ADD " + check).format(sql.Identifier(*table))  # type: ignore[arg-type]
        )

    sent = build(case, case.bad)
    run = run_target(config, sent.text, tmp_path / "refused", timeout=300)

    # One sentence naming the stream, the line and the database's reason; no traceback.
    assert run.returncode != 0, run.stderr
    assert "Traceback" not in run.stderr
    errors = run.error_lines()
    assert len(errors) == 1, run.stderr
    assert errors[0].startswith(
        f"Input line {sent.bad_line}: the database refused the record of stream users ("
    ), errors[0]
    assert case.reason in errors[0], errors[0]
    assert errors[0].endswith(
        "; every record before that line is committed and the last STATE before it emitted:"
        " change that record, or the stream's schema, so that the database can hold it, and"
        " run again from that state."
    ), errors[0]
    # The STATE before the bad line is emitted, none after it; none at all when it follows
    # records of a full refresh that is never swapped in (SPEC §6.1: the next run discards it).
    emitted = [] if method == "overwrite" else ['{"pos": 1}']
    assert run.stdout.splitlines() == emitted, run.stdout

    # Every record of the lines before the bad one is committed, in both streams; none after.
    got = tables(pg_db, "tap")
    key = next(iter(case.properties))
    good = [case.good(n)[key] for n in range(1, case.count + 1)]
    final_kept = layout != "raw_only" and method != "overwrite"
    for where in ("final", "raw"):
        users, events = got[f"{where}.users"], got[f"{where}.events"]
        if (where == "raw" and layout == "direct") or (where == "final" and layout == "raw_only"):
            assert users is None
            assert events is None
            continue
        if where == "final" and not final_kept:
            assert users == [], where  # an overwrite's rows wait in its side table
            continue
        assert sorted(committed(users, key)) == sorted(good), where
        assert sorted(committed(events, "seq")) == sent.events_before, where
    if final_kept and layout != "direct":
        assert got["final.users"] is not None
        assert got["raw.users"] is not None
        assert len(got["final.users"]) == len(got["raw.users"]) == case.count

    # The re-run from that state, the line fixed, ends as one uninterrupted run. (A full
    # refresh's tap starts its sync again: all of its records, first.)
    again = build(case, case.fixed).text if method == "overwrite" else resumed_input(case)
    resumed = run_target(config, again, tmp_path / "resumed", timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.splitlines()[-1:] == ['{"pos": 2}'], resumed.stdout
    reference = run_target(
        pg_db.config(schema="ref", **settings),
        build(case, case.fixed).text,
        tmp_path / "reference",
        timeout=300,
    )
    assert reference.returncode == 0, reference.stderr
    expected = tables(pg_db, "ref")
    got = tables(pg_db, "tap")
    for table, rows in expected.items():
        assert got[table] == rows, table


def test_a_stream_with_too_many_columns_keeps_every_line_before_it(
    pg_db: PgDatabase, tmp_path: Path
) -> None:
    """A SCHEMA of 1,700 properties: no table holds more than 1,600 columns."""
    wide = schema_message("wide", {f"p{i}": {"type": "string"} for i in range(1_700)})
    for layout in ("raw_and_final", "direct"):
        config = pg_db.config(schema=layout, table_layout=layout)
        lines = [EVENTS]
        lines += [record("events", {"seq": n, "what": "x"}, AT) for n in range(1, 30_011)]
        lines += [{"type": "STATE", "value": {"pos": 1}}, wide]
        lines += [record("events", {"seq": -1, "what": "after"}, AT)]
        lines += [{"type": "STATE", "value": {"pos": 2}}]
        run = run_target(config, messages(*lines), tmp_path / layout, timeout=300)
        assert run.returncode != 0, run.stderr
        assert "Traceback" not in run.stderr
        errors = run.error_lines()
        assert errors == [
            "Input line 30013: the database refused the tables of stream wide (tables can have"
            " at most 1600 columns, SQLSTATE 54011): change the stream's schema so that the"
            " database can hold it, and run again from the last STATE this run emitted."
        ], run.stderr
        assert run.stdout.splitlines() == ['{"pos": 1}'], run.stdout
        seqs = pg_db.admin().execute(
            sql.SQL("SELECT seq FROM {} ORDER BY seq").format(sql.Identifier(layout, "events"))
        )
        assert [seq for (seq,) in seqs.fetchall()] == list(range(1, 30_011))


def test_the_earliest_refused_record_of_all_streams_is_the_one_named(
    pg_db: PgDatabase, tmp_path: Path
) -> None:
    """The batch the database refuses first is not always the one holding the earliest refused
    record: another stream's batch, still open, may hold an earlier one. Nothing of that line
    or after it is committed in any stream, and the STATE before it is the one emitted."""
    long_key, wide = CASES["long key"], CASES["row too big"]
    lines: list[dict[str, Any]] = [
        schema_message("users", long_key.properties, long_key.keys),
        schema_message("wide", wide.properties),
    ]
    for n in range(1, 301):
        lines.append(record("users", long_key.good(n), AT))
        lines.append(record("wide", wide.good(n), AT))
    lines.append({"type": "STATE", "value": {"pos": 1}})
    bad_line = len(lines) + 1
    lines.append(record("wide", wide.bad, AT))  # the earliest refused record: in an open batch
    lines += [record("users", long_key.good(n), AT) for n in range(301, 400)]
    lines.append({"type": "STATE", "value": {"pos": 2}})
    lines.append(record("users", long_key.bad, AT))  # refused first: its batch fills at 500
    lines += [record("users", long_key.good(n), AT) for n in range(400, 600)]
    config = pg_db.config(schema="tap", batch_size_rows=500)
    run = run_target(config, messages(*lines), tmp_path, timeout=300)

    assert run.returncode != 0, run.stderr
    errors = run.error_lines()
    assert len(errors) == 1, run.stderr
    assert errors[0].startswith(
        f"Input line {bad_line}: the database refused the record of stream wide (row is too big"
    ), errors[0]
    assert run.stdout.splitlines() == ['{"pos": 1}'], run.stdout
    admin = pg_db.admin()
    users = admin.execute("SELECT n FROM tap.users ORDER BY n").fetchall()
    assert [n for (n,) in users] == list(range(1, 301))
    raw_users = admin.execute(
        "SELECT (_airbyte_data->>'n')::int FROM airbyte_internal.tap_raw__stream_users"
        " ORDER BY _airbyte_raw_id"
    ).fetchall()
    assert [n for (n,) in raw_users] == list(range(1, 301))
    wide_rows = admin.execute("SELECT c0000, c0001 FROM tap.wide ORDER BY c0000").fetchall()
    assert wide_rows == [(n, n * 2) for n in range(1, 301)]


def test_with_a_state_after_every_record_the_one_just_before_is_emitted(
    pg_db: PgDatabase, tmp_path: Path
) -> None:
    """Many STATEs wait in a batch: the one right before the refused record's line is emitted,
    after the records of the earlier batches and of this batch up to that line."""
    case = CASES["long key"]
    lines: list[dict[str, Any]] = [schema_message("users", case.properties, case.keys)]
    for n in range(1, 1_501):
        lines += [record("users", case.good(n), AT), {"type": "STATE", "value": {"pos": n}}]
    bad_line = len(lines) + 1
    lines += [record("users", case.bad, AT), {"type": "STATE", "value": {"pos": "after"}}]
    lines += [record("users", case.good(n), AT) for n in range(1_501, 1_600)]
    run = run_target(pg_db.config(schema="tap", batch_size_rows=1_000), messages(*lines), tmp_path)
    assert run.returncode != 0, run.stderr
    errors = run.error_lines()
    assert len(errors) == 1, run.stderr
    assert errors[0].startswith(f"Input line {bad_line}: the database refused"), errors[0]
    emitted = [json.loads(line)["pos"] for line in run.stdout.splitlines()]
    assert emitted[-1] == 1_500, emitted[-5:]
    assert emitted == sorted(emitted)
    found = pg_db.admin().execute("SELECT n FROM tap.users ORDER BY n").fetchall()
    assert [n for (n,) in found] == list(range(1, 1_501))
