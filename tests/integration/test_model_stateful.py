"""SPEC §4.1, §4.2, §6, §7 and §9 as a model: random sequences of runs of the real
`target-postgres-hp` executable against PostgreSQL 16, each followed by a comparison of every
table with a small pure-Python model of what SPEC says the tables must hold.

The model, written from SPEC alone (one `TableModel` per final table):
- append: every record is a row, a deletion marker kept (§6.2);
- append-dedup: per key (NULL components equal) the greatest of (cursor, NULL lowest; then
  `time_extracted`; then arrival) among the row already there, a remembered hard delete and the
  run's records; the winner replaces the whole row (a property it lacks is NULL); with
  hard_delete a winning delete removes the row and is remembered, so a later, older record
  cannot bring it back; with soft_delete it is the row (§6.3);
- overwrite, and any stream sent with table versions whatever its load method (append and
  append-dedup included): exactly the records of the latest completed load; with
  ACTIVATE_VERSION v, only rows of version v, `_airbyte_generation_id` v (§6.1, §4.1); a
  completed full refresh also ends what earlier hard deletes remembered;
- a new property adds a nullable column, a removed one keeps its column, NULL in rows written
  since (§7);
- a stream without namespace goes to the first `schema`, `sales-orders` to `sales.orders`; every
  final table has its own raw table `<schema>_raw__stream_<table>` holding every record delivered
  to it, whatever `schema` was set to in earlier runs (§4.1, §6.4);
- killed runs: SIGKILL once the target has handled a random number of input lines, then a re-run
  from the last STATE it emitted. Records sent to the killed run after that STATE come again, so
  they may be in append tables and raw tables twice; dedup tables must be exact; a full refresh
  without table versions is restarted whole (the tap re-sends every record) and must not double;
  one with versions is continued by the re-run's records of that version (§6.1, §9). Before the
  re-run, tables the killed run did not load, and full-refresh tables whose load it could not
  have completed, must be exactly as before it: no reader ever sees two versions.
- an emitted STATE never promises rows a later run can lose: the re-run resumes from the last
  emitted STATE and re-sends nothing before it, so a STATE emitted after a record of a full
  refresh without versions, before that load replaced its table, fails the check (§6.1).
- blocked swaps: a reader's open transaction holds ACCESS SHARE on a full-refresh table the run
  replaces, past `lock_wait_seconds`: the run fails; that table is as before, no STATE after
  its load's last record was emitted, and the re-run from the last emitted STATE (the reader
  gone) leaves every table as the model says.

Where SPEC leaves room, the inputs avoid the question instead of guessing an answer: keyed
streams are never loaded with plain `append` (so no table holds duplicates of a key or deletion
markers a later dedup run would have to judge), a full-refresh load of a keyed stream has each
key once, delete records are sent only to dedup runs without table versions (and to the keyless
append stream), every full-refresh load has at least one record, and each run that sends a
stream table versions sends its own version. Records without a version that follow a versioned
load may carry generation 0 or that version. The deletion mode is drawn per run: a remembered
hard delete beats older records whatever later runs use (§6.3).
Runs draw `namespace_definition` (source or destination: `sales-orders` then goes to the first
`schema` as `orders`) and `stream_prefix`, so a sequence moves streams between tables as users
changing those settings would.
Runs also draw `table_layout` (raw_and_final or direct, §4.5): a direct run's rows have no raw
rows, and its records are not added to the raw table the model expects.
Not covered: type widening (§7), key changes, `table_layout: raw_only`,
`namespace_definition: custom`, SIGTERM, bad input; the raw tables of full-refresh streams are only
checked to hold the final rows' raw rows (SPEC does not say what else they keep).

Bounds: HP_MODEL_EXAMPLES sequences (default 10) of at most HP_MODEL_STEPS steps (default 6),
each step one run or a killed run and its re-run: about 60 s on 2 cores. Longer, locally:
`HP_MODEL_EXAMPLES=60 HP_MODEL_STEPS=10` (about 10 min). Shrinking a failure re-runs many
sequences, so it is off unless HP_MODEL_SHRINK=1; every run's settings and input are kept in the
test's tmp_path (`<database>/run<N>[-killed|-rerun]/`) to replay by hand.
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import signal
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

import psycopg
import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule, run_state_machine_as_test
from psycopg import sql
from psycopg.rows import dict_row
from servers import PgDatabase, PostgresServer

from .targetrun import (
    META_COLUMNS,
    column_types,
    live_run,
    messages,
    raw_rows,
    run_target,
    tables_in,
    wait_for_no_loader,
)

pytestmark = pytest.mark.integration

EXAMPLES = int(os.environ.get("HP_MODEL_EXAMPLES", "10"))
STEPS = int(os.environ.get("HP_MODEL_STEPS", "6"))
SHRINK = os.environ.get("HP_MODEL_SHRINK", "") == "1"

RAW_SCHEMA = "airbyte_internal"
SCHEMA_SETTINGS = ("tap_a", "tap_b", "tap_b,tap_a")
FINAL_SCHEMAS = ("tap_a", "tap_b", "sales")
MAX_RECORDS = 7
FIRST_VERSION = 1_717_000_000_000

BIGINT = "bigint"
VARCHAR = "character varying"
NUMERIC = "numeric"
JSONB = "jsonb"
TIMESTAMPTZ = "timestamp with time zone"

DELETED_AT = ("2024-07-01T00:00:00Z", "2024-07-02T12:00:00+02:00")
SCORES = (2.5, -3.25, 7, 0.125)

# --------------------------------------------------------------------------- the streams


@dataclass(frozen=True)
class Property:
    """A top-level property: its JSON schema and the column type §4.3 gives it."""

    name: str
    json_type: Any
    data_type: str
    optional: bool = False

    def json_schema(self) -> dict[str, Any]:
        if self.data_type == TIMESTAMPTZ:
            return {"type": self.json_type, "format": "date-time"}
        if self.data_type == JSONB:
            return {}
        return {"type": self.json_type}


@dataclass(frozen=True)
class Stream:
    """A Singer stream of the generated inputs."""

    name: str
    table: str
    namespace: str | None
    keys: tuple[str, ...]
    cursor: str | None
    label: str  # the property whose value is unique per record sent
    marker: str  # the deletion marker property
    properties: tuple[Property, ...]
    methods: tuple[str, ...]  # the load methods a run may give it

    def schema_message(self, optional: frozenset[str]) -> dict[str, Any]:
        message: dict[str, Any] = {
            "type": "SCHEMA",
            "stream": self.name,
            "schema": {
                "type": "object",
                "properties": {p.name: p.json_schema() for p in self.in_run(optional)},
            },
            "key_properties": list(self.keys),
        }
        if self.cursor:
            message["bookmark_properties"] = [self.cursor]
        return message

    def in_run(self, optional: frozenset[str]) -> list[Property]:
        """The properties of the SCHEMA message of a run that declares `optional`."""
        return [p for p in self.properties if not p.optional or p.name in optional]


USERS = Stream(
    name="users",
    table="users",
    namespace=None,
    keys=("id",),
    cursor="updated",
    label="name",
    marker="_ab_cdc_deleted_at",
    properties=(
        Property("id", "integer", BIGINT),
        Property("updated", ["integer", "null"], BIGINT),
        Property("name", ["string", "null"], VARCHAR),
        Property("note", ["string", "null"], VARCHAR, optional=True),
        Property("score", ["number", "null"], NUMERIC, optional=True),
        Property("_ab_cdc_deleted_at", ["null", "string"], TIMESTAMPTZ),
    ),
    methods=("append-dedup", "append-dedup", "overwrite"),
)
EVENTS = Stream(
    name="events",
    table="events",
    namespace=None,
    keys=(),
    cursor=None,
    label="seq",
    marker="_ab_cdc_deleted_at",
    properties=(
        Property("seq", "integer", BIGINT),
        Property("kind", "string", VARCHAR),
        Property("payload", None, JSONB),
        Property("tag", ["string", "null"], VARCHAR, optional=True),
        Property("_ab_cdc_deleted_at", ["null", "string"], TIMESTAMPTZ),
    ),
    methods=("append", "append", "overwrite"),
)
ORDERS = Stream(
    name="sales-orders",
    table="orders",
    namespace="sales",
    keys=("region", "n"),
    cursor=None,
    label="v",
    marker="_sdc_deleted_at",
    properties=(
        Property("region", ["string", "null"], VARCHAR),
        Property("n", "integer", BIGINT),
        Property("v", "string", VARCHAR),
        Property("_sdc_deleted_at", ["null", "string"], TIMESTAMPTZ),
    ),
    methods=("append-dedup", "append-dedup", "overwrite"),
)
STREAMS = (USERS, EVENTS, ORDERS)
BY_NAME = {stream.name: stream for stream in STREAMS}
#: The key of the one record a full refresh that was given none gets.
FILLER_KEYS: dict[str, tuple[Any, ...]] = {"users": (1,), "events": (), "sales-orders": ("eu", 1)}
OPTIONAL = tuple(p.name for s in STREAMS for p in s.properties if p.optional)
#: How `load_method` and `stream_load_methods` may spell each method (§2: the SDK's names too).
SPELLINGS = {
    "append-dedup": ("append-dedup", "upsert"),
    "append": ("append", "append-only"),
    "overwrite": ("overwrite",),
}


def resolved(load_method: str | None, stream: Stream) -> str:
    """The method `load_method` alone gives a stream (§2)."""
    if load_method is None:
        return "append-dedup" if stream.keys else "append"
    return next(name for name, spellings in SPELLINGS.items() if load_method in spellings)


# --------------------------------------------------------------------------- generated plans


@dataclass(frozen=True)
class RecordPlan:
    """One record to send: which stream, key, cursor, extraction minute, delete or not."""

    stream: str
    key: tuple[Any, ...]
    cursor: int | None
    minute: int
    deleted: bool
    variant: int  # picks the values of the other properties


@dataclass(frozen=True)
class RunPlan:
    """One run: its settings and the records it sends, in arrival order."""

    schema: str
    load_method: str | None
    stream_load_methods: tuple[tuple[str, str], ...]
    methods: tuple[tuple[str, str], ...]  # the effective method per stream
    versioned: tuple[str, ...]  # streams sent with table versions (full refreshes, §6.1)
    activate_first: bool  # also an ACTIVATE_VERSION before the records
    cdc_deletion_mode: str | None
    batch_size_rows: int
    optional: frozenset[str]
    state_every: int
    records: tuple[RecordPlan, ...]
    namespace_definition: str = "source"
    stream_prefix: str = ""
    table_layout: str = "raw_and_final"


def record_plans(stream: Stream) -> st.SearchStrategy[RecordPlan]:
    if stream is USERS:
        keys: st.SearchStrategy[tuple[Any, ...]] = st.tuples(st.integers(1, 3))
    elif stream is ORDERS:
        keys = st.tuples(st.sampled_from([None, "eu"]), st.integers(1, 2))
    else:
        keys = st.just(())
    return st.builds(
        RecordPlan,
        stream=st.just(stream.name),
        key=keys,
        cursor=st.none() | st.integers(1, 3) if stream.cursor else st.none(),
        minute=st.integers(0, 2),
        deleted=st.sampled_from([False, False, False, True]),
        variant=st.integers(0, 3),
    )


@st.composite
def run_plans(draw: st.DrawFn) -> RunPlan:
    methods = {stream.name: draw(st.sampled_from(stream.methods)) for stream in STREAMS}
    load_method = draw(st.sampled_from([None, *itertools.chain(*SPELLINGS.values())]))
    overrides = {
        stream.name: draw(st.sampled_from(SPELLINGS[methods[stream.name]]))
        for stream in STREAMS
        if resolved(load_method, stream) != methods[stream.name] or draw(st.integers(0, 4)) == 0
    }
    return RunPlan(
        schema=draw(st.sampled_from(SCHEMA_SETTINGS)),
        load_method=load_method,
        stream_load_methods=tuple(sorted(overrides.items())),
        methods=tuple(sorted(methods.items())),
        versioned=tuple(stream.name for stream in STREAMS if draw(st.booleans())),
        activate_first=draw(st.booleans()),
        cdc_deletion_mode=draw(st.sampled_from([None, "hard_delete", "soft_delete"])),
        batch_size_rows=draw(st.integers(1, 3)),
        optional=frozenset(draw(st.sets(st.sampled_from(OPTIONAL)))),
        state_every=draw(st.integers(1, 3)),
        records=tuple(
            draw(
                st.lists(st.one_of(*map(record_plans, STREAMS)), max_size=MAX_RECORDS),
            )
        ),
        namespace_definition=draw(st.sampled_from(["source", "source", "destination"])),
        stream_prefix=draw(st.sampled_from(["", "", "p_"])),
        table_layout=draw(st.sampled_from(["raw_and_final", "raw_and_final", "direct"])),
    )


# --------------------------------------------------------------------------- concrete input


@dataclass(frozen=True)
class Sent:
    """A RECORD as the tap sent it."""

    stream: Stream
    data: dict[str, Any] = field(hash=False)
    time_extracted: str
    version: int | None
    line: int

    @property
    def label(self) -> Any:
        return self.data[self.stream.label]

    @property
    def extracted(self) -> datetime:
        return instant(self.time_extracted)

    @property
    def key(self) -> tuple[Any, ...]:
        return tuple(self.data.get(name) for name in self.stream.keys)

    @property
    def deleted(self) -> bool:
        return self.data.get(self.stream.marker) is not None

    def message(self) -> dict[str, Any]:
        message = {
            "type": "RECORD",
            "stream": self.stream.name,
            "record": self.data,
            "time_extracted": self.time_extracted,
        }
        if self.version is not None:
            message["version"] = self.version
        return message


@dataclass
class Input:
    """One run's Singer lines and what the model needs to know about them."""

    number: int
    plan: RunPlan
    lines: list[dict[str, Any]]
    records: list[Sent]
    versions: dict[str, int]
    header: int  # how many SCHEMA lines open the input
    activate_end: dict[str, int]  # stream → line of its closing ACTIVATE_VERSION

    @property
    def schema(self) -> str:
        return self.plan.schema.split(",")[0]

    def method(self, stream: Stream) -> str:
        return dict(self.plan.methods)[stream.name]

    def full_refresh(self, stream: Stream) -> bool:
        """Whether the run loads the stream as a full refresh: overwrite, or table versions
        whatever its method (§6.1)."""
        return self.method(stream) == "overwrite" or stream.name in self.versions

    def final_schema(self, stream: Stream) -> str:
        if self.plan.namespace_definition == "destination":
            return self.schema
        return stream.namespace or self.schema

    def final_table(self, stream: Stream) -> str:
        return self.plan.stream_prefix + stream.table

    def text(self, lines: list[dict[str, Any]]) -> str:
        return messages(*lines)


def record_data(stream: Stream, plan: RecordPlan, label: int, optional: frozenset[str]) -> Any:
    """The record of `plan`, with property values derived from its label and variant."""
    data: dict[str, Any]
    if stream is USERS:
        data = {"id": plan.key[0], "name": f"u{label}"}
        if plan.cursor is not None or plan.variant % 2:
            data["updated"] = plan.cursor
        if "note" in optional and plan.variant != 1:
            data["note"] = None if plan.variant == 2 else f"note {label}"
        if "score" in optional and plan.variant != 2:
            data["score"] = SCORES[plan.variant]
    elif stream is EVENTS:
        data = {
            "seq": label,
            "kind": ("click", "view")[plan.variant % 2],
            "payload": {"n": label, "tags": ["t", str(plan.variant)]},
        }
        if "tag" in optional and plan.variant != 3:
            data["tag"] = None if plan.variant == 0 else f"tag {plan.variant}"
    else:
        data = {"region": plan.key[0], "n": plan.key[1], "v": f"o{label}"}
    if plan.deleted:
        data[stream.marker] = DELETED_AT[plan.variant % 2]
    elif plan.variant == 3:
        data[stream.marker] = None
    return data


def build_input(plan: RunPlan, number: int, labels: itertools.count[int]) -> Input:
    """The Singer lines of run `number`: SCHEMA messages, opening ACTIVATE_VERSIONs, the
    records with a STATE after every `state_every`, closing ACTIVATE_VERSIONs, a last STATE."""
    methods = dict(plan.methods)
    versions = {name: FIRST_VERSION + number for name in plan.versioned}
    lines: list[dict[str, Any]] = [stream.schema_message(plan.optional) for stream in STREAMS]
    header = len(lines)
    if plan.activate_first:
        lines += [activate(name, version) for name, version in versions.items()]
    records: list[Sent] = []
    seen_keys: set[tuple[str, tuple[Any, ...]]] = set()
    wanted = list(plan.records)

    def full_refresh(name: str) -> bool:
        return methods[name] == "overwrite" or name in versions

    for stream in STREAMS:  # every full refresh loads something (SPEC leaves empty loads open)
        if full_refresh(stream.name) and not any(r.stream == stream.name for r in wanted):
            wanted.append(RecordPlan(stream.name, FILLER_KEYS[stream.name], None, 0, False, 0))
    for item in wanted:
        stream = BY_NAME[item.stream]
        method = methods[stream.name]
        if stream.keys and full_refresh(stream.name):
            if (stream.name, item.key) in seen_keys:
                continue  # one record per key in a keyed full refresh
            seen_keys.add((stream.name, item.key))
        deletes = (method == "append-dedup" and stream.name not in versions) or (
            method == "append" and not stream.keys
        )
        item = replace(item, deleted=item.deleted and deletes)
        sent = Sent(
            stream=stream,
            data=record_data(stream, item, next(labels), plan.optional),
            time_extracted=f"2024-06-01T10:0{item.minute}:00Z",
            version=versions.get(stream.name),
            line=len(lines),
        )
        records.append(sent)
        lines.append(sent.message())
        if len(records) % plan.state_every == 0:
            lines.append(state(number, len(lines)))
    activate_end = {}
    for name, version in versions.items():
        activate_end[name] = len(lines)
        lines.append(activate(name, version))
    lines.append(state(number, len(lines)))
    return Input(number, plan, lines, records, versions, header, activate_end)


def activate(stream: str, version: int) -> dict[str, Any]:
    return {"type": "ACTIVATE_VERSION", "stream": stream, "version": version}


def state(run: int, line: int) -> dict[str, Any]:
    return {"type": "STATE", "value": {"run": run, "line": line}}


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# --------------------------------------------------------------------------- the model


@dataclass
class Row:
    """A record in a table: `copies` is how many times it may be there (min, max)."""

    record: Sent
    arrival: int
    generations: frozenset[int]
    copies: tuple[int, int] = (1, 1)
    #: Whether its run had raw tables (`table_layout` raw_and_final, not direct).
    has_raw: bool = True

    def rank(self) -> tuple[Any, ...]:
        """§6.3: greatest cursor (NULL lowest), then latest extraction, then latest arrival."""
        stream = self.record.stream
        cursor = self.record.data.get(stream.cursor) if stream.cursor else None
        return (cursor is not None, cursor or 0, self.record.extracted, self.arrival)


@dataclass
class TableModel:
    """What one final table (and its raw table) must hold."""

    stream: Stream
    schema: str
    #: The final table's name (the stream's table part behind `stream_prefix`).
    table: str
    columns: list[Property] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    #: Hard deletes that won, by key: they still beat older records (§6.3).
    deleted: dict[tuple[Any, ...], Row] = field(default_factory=dict)
    #: Every record delivered, while the model can know it (None after a full refresh).
    raw: list[Row] | None = field(default_factory=list)
    #: The last activated table version.
    version: int | None = None
    #: Whether a run with raw tables (raw_and_final) has loaded it: its raw table exists.
    raw_made: bool = False

    @property
    def name(self) -> str:
        return self.table

    @property
    def raw_name(self) -> str:
        return f"{self.schema}_raw__stream_{self.table}"

    def generations(self, version: int | None) -> frozenset[int]:
        if version is not None:
            return frozenset({version})
        return frozenset({0} if self.version is None else {0, self.version})

    def load(
        self, inp: Input, records: list[Sent], arrivals: itertools.count[int], twice: set[Any]
    ) -> None:
        names = {p.name for p in self.columns}
        self.columns += [p for p in self.stream.in_run(inp.plan.optional) if p.name not in names]
        method = inp.method(self.stream)
        version = inp.versions.get(self.stream.name)
        rows = [
            Row(
                record,
                next(arrivals),
                self.generations(version),
                (1, 2) if record.label in twice else (1, 1),
                inp.plan.table_layout == "raw_and_final",
            )
            for record in records
        ]
        if inp.plan.table_layout == "raw_and_final":
            self.raw_made = True
        if method == "overwrite" or version is not None:
            # A restarted load without versions is re-sent whole and must not double (§6.1);
            # a keyed one holds each key once.
            exact = version is None or bool(self.stream.keys)
            self.rows = [
                Row(r.record, r.arrival, r.generations, has_raw=r.has_raw) if exact else r
                for r in rows
            ]
            self.deleted.clear()
            self.raw = None
            self.version = version if version is not None else self.version
            return
        if self.raw is not None:
            self.raw += [row for row in rows if row.has_raw]
        if method == "append":
            self.rows += rows
            return
        hard = inp.plan.cdc_deletion_mode != "soft_delete"
        table = {row.record.key: row for row in self.rows}
        for row in rows:
            key = row.record.key
            competitors = [r for r in (table.get(key), self.deleted.get(key)) if r is not None]
            if any(other.rank() >= row.rank() for other in competitors):
                continue
            exact = Row(row.record, row.arrival, row.generations, has_raw=row.has_raw)
            if row.record.deleted and hard:
                table.pop(key, None)
                self.deleted[key] = exact
            else:
                table[key] = exact
                self.deleted.pop(key, None)
        self.rows = list(table.values())


@dataclass
class Model:
    """Every final table the runs so far must have left, by (schema, table)."""

    tables: dict[tuple[str, str], TableModel] = field(default_factory=dict)
    arrivals: itertools.count[int] = field(default_factory=itertools.count)

    def table(self, inp: Input, stream: Stream) -> TableModel:
        schema, table = inp.final_schema(stream), inp.final_table(stream)
        return self.tables.setdefault((schema, table), TableModel(stream, schema, table))

    def apply(self, inp: Input, twice: set[tuple[str, Any]] | None = None) -> None:
        """Book a completed run (or a killed one and its re-run: `twice` holds the
        (stream, label) of the records sent to both)."""
        for stream in STREAMS:
            records = [r for r in inp.records if r.stream is stream]
            labels = {label for name, label in twice or () if name == stream.name}
            self.table(inp, stream).load(inp, records, self.arrivals, labels)


# --------------------------------------------------------------------------- reading back


def assert_same(actual: Any, expected: Any, where: str) -> None:
    """Equal and of the same Python type."""
    assert type(actual) is type(expected), f"{where}: {actual!r} is not like {expected!r}"
    assert actual == expected, f"{where}: {actual!r} != {expected!r}"


def typed(prop: Property, value: Any) -> Any:
    """What a column of `prop` reads back as for a JSON value (§4.3, §4.4)."""
    if value is None:
        return None
    if prop.data_type == BIGINT:
        return int(value)
    if prop.data_type == NUMERIC:
        return Decimal(str(value))
    if prop.data_type == TIMESTAMPTZ:
        return instant(value)
    if prop.data_type == VARCHAR:
        return str(value)
    return value


def describe(rows: list[Row]) -> str:
    return ", ".join(f"{r.record.label}{'' if r.copies == (1, 1) else '(1-2)'}" for r in rows)


def check_final(
    conn: psycopg.Connection[Any], table: TableModel, may_add: frozenset[str] = frozenset()
) -> None:
    """The final table holds exactly the model's rows, column by column, with types; each row's
    raw id names a raw row of the table's own raw table holding that record (§4.1, §4.2).
    `may_add`: property columns a killed run may have added after the model's."""
    where = f"{table.schema}.{table.name}"
    columns = column_types(conn, table.schema, table.name)
    assert columns, f"{where} does not exist"
    properties = [column for column in columns if not column[0].startswith("_airbyte_")]
    wanted = [(p.name, p.data_type) for p in table.columns]
    added = properties[len(wanted) :]
    assert properties[: len(wanted)] == wanted, f"{where}: columns {properties}, not {wanted}"
    assert {name for name, _ in added} <= may_add, f"{where}: columns {properties}, not {wanted}"
    assert [c for c in columns if c[0].startswith("_airbyte_")] == META_COLUMNS, where
    made = table.raw_made
    raw = {row[0]: row for row in raw_rows(conn, table.raw_name, RAW_SCHEMA)} if made else {}
    with conn.cursor(row_factory=dict_row) as cursor:
        cursor.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(table.schema, table.name)))
        rows = cursor.fetchall()
    got: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        got[row[table.stream.label]].append(row)
    expected = {row.record.label: row for row in table.rows}
    assert set(got) == set(expected), (
        f"{where} holds {sorted(map(str, got))}, the model {describe(table.rows)};"
        f" missing {sorted(map(str, set(expected) - set(got)))},"
        f" unexpected {sorted(map(str, set(got) - set(expected)))}"
    )
    for label, found in got.items():
        model = expected[label]
        at = f"{where} row {label}"
        low, high = model.copies
        assert low <= len(found) <= high, f"{at}: {len(found)} copies, expected {model.copies}"
        record = model.record
        for row in found:
            for prop in table.columns:
                assert_same(row[prop.name], typed(prop, record.data.get(prop.name)), f"{at} {prop}")
            for name, _ in added:
                assert row[name] is None, f"{at}: {name} = {row[name]!r}"
            assert_same(row["_airbyte_extracted_at"], record.extracted, f"{at} extracted_at")
            generation = row["_airbyte_generation_id"]
            assert type(generation) is int, f"{at}: generation {generation!r}"
            assert generation in model.generations, f"{at}: generation {generation}"
            meta = row["_airbyte_meta"]
            assert meta.get("changes") == [], f"{at}: _airbyte_meta {meta}"
            assert type(meta.get("sync_id")) is int, f"{at}: _airbyte_meta {meta}"
            raw_row = raw.get(row["_airbyte_raw_id"])
            if not model.has_raw:  # loaded by a direct run: no raw row (§4.5)
                assert raw_row is None, f"{at}: a direct run's row has a raw row"
                continue
            assert raw_row is not None, f"{at}: its raw id is not in {table.raw_name}"
            assert raw_row[3] == record.data, f"{at}: raw row {raw_row[3]} in {table.raw_name}"


def check_raw(conn: psycopg.Connection[Any], table: TableModel) -> None:
    """The raw table holds every record delivered to its final table, typed (§4.1, §9)."""
    if table.raw is None or not table.raw_made:
        return
    rows = raw_rows(conn, table.raw_name, RAW_SCHEMA)
    label = table.stream.label
    counts = Counter(row[3].get(label) for row in rows)
    expected = {row.record.label: row for row in table.raw}
    assert set(counts) == set(expected), (
        f"{RAW_SCHEMA}.{table.raw_name} holds {sorted(map(str, counts))},"
        f" the model {describe(table.raw)}"
    )
    for row in rows:
        model = expected[row[3][label]]
        at = f"{RAW_SCHEMA}.{table.raw_name} row {row[3][label]}"
        low, high = model.copies
        assert low <= counts[row[3][label]] <= high, f"{at}: copies, expected {model.copies}"
        assert row[3] == model.record.data, f"{at}: {row[3]}"
        assert row[1] == model.record.extracted, f"{at}: extracted at {row[1]}"
        assert row[2] is not None, f"{at}: never typed"
        assert row[5] in model.generations, f"{at}: generation {row[5]}"


def check_all(conn: psycopg.Connection[Any], model: Model) -> None:
    """Every table of the model, and no other table in its schemas."""
    for schema in FINAL_SCHEMAS:
        wanted = sorted(t.name for t in model.tables.values() if t.schema == schema)
        assert tables_in(conn, schema) == wanted, f"tables of {schema}"
    raw_names = sorted(t.raw_name for t in model.tables.values() if t.raw_made)
    # The target may keep remembered hard deletes beside a raw table, in `<raw table>_deletes`
    # (named so in the direct layout too, which makes no raw table).
    companions = {f"{t.raw_name}_deletes" for t in model.tables.values()}
    found = [name for name in tables_in(conn, RAW_SCHEMA) if name not in companions]
    assert found == raw_names, "raw tables: one per final table a raw_and_final run loaded (§4.1)"
    for table in model.tables.values():
        check_final(conn, table)
        check_raw(conn, table)


# --------------------------------------------------------------------------- killing a run


def emitted(stdout: list[str] | str, inp: Input) -> list[int]:
    """The lines of the STATEs a run emitted; they must be this run's, in order."""
    text = stdout.splitlines() if isinstance(stdout, str) else stdout
    values = [json.loads(line) for line in text if line.strip()]
    assert all(value.get("run") == inp.number for value in values), values
    positions = [value["line"] for value in values]
    assert positions == sorted(set(positions)), f"STATEs out of order: {values}"
    return positions


# --------------------------------------------------------------------------- the machine


class LoaderMachine(RuleBasedStateMachine):
    """Runs of the target into one fresh database, each checked against the model."""

    server: ClassVar[PostgresServer]
    root: ClassVar[Path]

    def __init__(self) -> None:
        super().__init__()
        self.db = PgDatabase.create(self.server)
        self.conn = self.db.admin()
        self.conn.prepare_threshold = None  # `SELECT *` of a table that gains columns
        self.model = Model()
        self.runs = 0
        self.labels = itertools.count(1)

    def teardown(self) -> None:
        self.db.drop()

    def next_input(self, plan: RunPlan) -> Input:
        self.runs += 1
        return build_input(plan, self.runs, self.labels)

    def config(self, plan: RunPlan, lock_wait_seconds: int = 60) -> dict[str, Any]:
        settings: dict[str, Any] = {
            "schema": plan.schema,
            "batch_size_rows": plan.batch_size_rows,
            "lock_wait_seconds": lock_wait_seconds,
        }
        if plan.load_method is not None:
            settings["load_method"] = plan.load_method
        if plan.stream_load_methods:
            settings["stream_load_methods"] = dict(plan.stream_load_methods)
        if plan.cdc_deletion_mode is not None:
            settings["cdc_deletion_mode"] = plan.cdc_deletion_mode
        if plan.namespace_definition != "source":
            settings["namespace_definition"] = plan.namespace_definition
        if plan.stream_prefix:
            settings["stream_prefix"] = plan.stream_prefix
        if plan.table_layout != "raw_and_final":
            settings["table_layout"] = plan.table_layout
        return self.db.config(**settings)

    def workdir(self, inp: Input, suffix: str, lines: list[dict[str, Any]]) -> Path:
        """The run's directory, with its config and input kept for replaying by hand."""
        path = self.root / self.db.dbname / f"run{inp.number}{suffix}"
        path.mkdir(parents=True, exist_ok=True)
        (path / "input.jsonl").write_text(inp.text(lines))
        (path / "settings.json").write_text(json.dumps(self.config(inp.plan), indent=1))
        return path

    def complete(self, inp: Input, lines: list[dict[str, Any]], suffix: str = "") -> None:
        """Run the target to the end of `lines`; it must succeed and emit the last STATE."""
        workdir = self.workdir(inp, suffix, lines)
        run = run_target(self.config(inp.plan), inp.text(lines), workdir)
        assert run.returncode == 0, run.stderr
        positions = emitted(run.stdout, inp)
        assert positions, f"no STATE emitted:\n{run.stderr}"
        assert positions[-1] == len(inp.lines) - 1, f"STATEs {positions}:\n{run.stderr}"

    @rule(plan=run_plans())
    def run(self, plan: RunPlan) -> None:
        inp = self.next_input(plan)
        self.complete(inp, inp.lines)
        self.model.apply(inp)
        check_all(self.conn, self.model)

    @rule(plan=run_plans(), cut=st.integers(0, 1000))
    def kill_and_rerun(self, plan: RunPlan, cut: int) -> None:
        inp = self.next_input(plan)
        sent = 1 + cut % (len(inp.lines) - 1)  # at least one line, never the last STATE
        workdir = self.workdir(inp, "-killed", inp.lines[:sent])
        with live_run(self.config(inp.plan), workdir) as live:
            live.send(*inp.lines[:sent])
            live.wait_until_idle(60)
            live.process.send_signal(signal.SIGKILL)
            live.process.wait(timeout=60)
            live.finish()
        wait_for_no_loader(self.conn, self.db.role.name)
        self.check_after_failure(inp, sent, emitted(live.stdout, inp))

    @rule(plan=run_plans(), pick=st.integers(0, 2))
    def blocked_swap(self, plan: RunPlan, pick: int) -> None:
        """A reader holds ACCESS SHARE on a full-refresh table the run replaces, past
        lock_wait_seconds: the swap gives up and the run fails (§6.1, §9)."""
        inp = self.next_input(plan)
        tables = [
            (inp.final_schema(stream), inp.final_table(stream))
            for stream in STREAMS
            if inp.full_refresh(stream)
            and (inp.final_schema(stream), inp.final_table(stream)) in self.model.tables
        ]
        if not tables:
            self.complete(inp, inp.lines)
            self.model.apply(inp)
            check_all(self.conn, self.model)
            return
        blocked = tables[pick % len(tables)]
        workdir = self.workdir(inp, "-blocked", inp.lines)
        with psycopg.connect(self.db.server.admin_dsn(self.db.dbname)) as reader:
            seen = reader.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(*blocked))
            ).fetchone()
            assert seen is not None
            run = run_target(
                self.config(inp.plan, lock_wait_seconds=1), inp.text(inp.lines), workdir
            )
            reader.rollback()
        assert run.returncode == 1, run.stderr
        assert "Traceback" not in run.stderr, run.stderr
        assert "(lock_wait_seconds)" in run.stderr, run.stderr
        self.check_after_failure(inp, len(inp.lines), emitted(run.stdout, inp), blocked)

    def check_after_failure(
        self,
        inp: Input,
        sent: int,
        positions: list[int],
        blocked: tuple[str, str] | None = None,
    ) -> None:
        """After a run that handled `sent` lines and then died or failed, having emitted the
        STATEs at `positions`: check what it left (`check_after_kill`), then re-run from its
        last emitted STATE as a tap resuming from it would, and book both."""
        resume = positions[-1] if positions else -1
        assert resume < sent, positions
        self.check_after_kill(inp, sent, blocked)
        # An emitted STATE promises every record before it: a full refresh without versions
        # is never continued, so no STATE after one of its records may come before its swap.
        promised = [
            r.label
            for r in inp.records
            if r.line < resume and inp.full_refresh(r.stream) and r.stream.name not in inp.versions
        ]
        assert not promised, f"STATE at line {resume} emitted before the swap of {promised}"
        rerun = inp.lines if resume < 0 else [*inp.lines[: inp.header], *inp.lines[resume + 1 :]]
        self.complete(inp, rerun, "-rerun")
        twice = {(r.stream.name, r.label) for r in inp.records if resume < r.line < sent}
        self.model.apply(inp, twice)
        check_all(self.conn, self.model)

    def check_after_kill(
        self, inp: Input, sent: int, blocked: tuple[str, str] | None = None
    ) -> None:
        """Tables the killed run did not load, and full refreshes it cannot have completed
        (no closing ACTIVATE_VERSION handled, or the `blocked` one), are as before: no
        reader sees two versions (§6.1, §9)."""
        loaded = {(inp.final_schema(stream), inp.final_table(stream)): stream for stream in STREAMS}
        for key, table in self.model.tables.items():
            stream = loaded.get(key)
            if stream is None:
                check_final(self.conn, table)
                check_raw(self.conn, table)
                continue
            if not inp.full_refresh(stream):
                continue
            if blocked is not None and key != blocked:
                continue  # the end of input came: its swap may have been done before
            if key != blocked and inp.activate_end.get(stream.name, sent) < sent:
                continue
            before = copy.deepcopy(table)
            before.raw = None
            may_add = frozenset(p.name for p in stream.in_run(inp.plan.optional))
            check_final(self.conn, before, may_add)


@pytest.mark.timeout(max(300, EXAMPLES * STEPS * 20))
def test_random_runs_match_the_model(pg16: PostgresServer, tmp_path: Path) -> None:
    """Random sequences of runs, kills and re-runs leave every table as the model says."""

    class Machine(LoaderMachine):
        server = pg16
        root = tmp_path

    phases = [Phase.explicit, Phase.reuse, Phase.generate] + ([Phase.shrink] if SHRINK else [])
    run_state_machine_as_test(
        Machine,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
            phases=phases,
        ),
    )
