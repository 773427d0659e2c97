"""SPEC §9 crash safety, swept: the real `target-postgres-hp` is killed (SIGKILL) at many points
of one multi-stream run, re-run from the last STATE it emitted, and the tables it ends with are
compared with those of one uninterrupted run of the same input.

Streams, interleaved, each a table of its own (SPEC §6):
- `users`: append-dedup on `id`, cursor `updated` (cursors out of order, late older records,
  NULL cursors) and hard deletes through `_ab_cdc_deleted_at` (§6.3);
- `events`: append (§6.2);
- `snap`: keyless overwrite without table versions (§6.1). Its tap restarts the full-table sync
  in every re-run: all of its records again, first;
- `snapv`: keyless overwrite whose records carry a table `version`, with ACTIVATE_VERSION at the
  end of input: its tap resumes from the state, with the same version;
- `items`: overwrite with a key, versioned, ACTIVATE_VERSION before its records and right after
  its last one (mid-input). A re-run from a state past that ACTIVATE_VERSION is a new full sync
  of the stream with a new version, sent first.
Every stream first gets an earlier load (the "preload": old rows, a key whose cursor no record
beats, a key deleted with a cursor no record beats), so the overwrite tables have old rows to
keep until their swap and the dedup table has rows to compete with.

Every kill point gets schemas of its own (the stream namespace `kNNN`, one raw schema for all),
in one database with a least-privilege role; the reference run loads namespace `ref`. A re-run
sends the SCHEMA messages, what the taps above send again from the start, then every line after
the STATE it resumes from (the whole input when none was emitted). What must hold:
- at each kill: no committed raw row of `users`/`events` lost or changed; every record before the
  last emitted STATE is in its raw table; every overwrite table holds either its old rows or a
  whole load (the swap is atomic);
- after the last re-run: `users` and `items` exactly as in the reference run (column by column,
  raw ids and sync ids aside); `snap` exactly too (a restarted full sync never doubles rows);
  `events` and `snapv` as in the reference plus, once each, the records committed after the last
  STATE their killed run emitted (and sent again); raw tables of `users` and `events` likewise;
  every raw row typed; every final row the copy of a raw row; no side table left over.

Kill points (deterministic for a seed): after input line N once the target has handled it, for N
swept over the whole input (right after STATEs, after a batch fills, after each ACTIVATE_VERSION
included); with lines still being read, a random few milliseconds after sending up to N; the
moment a given STATE comes out; during the end of input (stdin closed, killed after a random
delay: the last drains, the swaps, the final STATE); and twice in a row (the re-run killed too).

Every kill point runs in both table layouts with raw tables (`LAYOUTS`): `raw_and_final`, and
`raw_only`, where the raw tables are all there is: there the same holds of them (no committed
raw row lost; `snap` exactly as in the reference; `snapv` and `items`, whose loads a re-run
continues, as in the reference plus the records re-sent; no row typed, no final table made).

`HP_KILL_POINTS` sets how many kill points run per layout (default 30: about three minutes per
layout on two cores); `HP_KILL_SEED` picks them (default 9). The first eight points are the
windows named above; more points add every kind in turn, spread over the whole input. A longer
local sweep: `HP_KILL_POINTS=200` (about 15 minutes). A failing kill point is named in the test id
and in each assertion message.
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import time as clock
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row
from servers import PgDatabase, PostgresServer

from .targetrun import (
    LiveRun,
    live_run,
    messages,
    raw_rows,
    record,
    run_target,
    wait_for_no_loader,
)

pytestmark = pytest.mark.integration

KILL_POINTS = int(os.environ.get("HP_KILL_POINTS", "30"))
KILL_SEED = int(os.environ.get("HP_KILL_SEED", "9"))

RAW_SCHEMA = "airbyte_internal"
DEFAULT_SCHEMA = "tap_data"
RECORDS = 97
STATE_EVERY = 5
BATCH = 4
KEYS = 11
#: The `items` records end after this record number, with their ACTIVATE_VERSION.
ITEMS_LAST = 60
#: Table versions: the preload's, the input's, and the first of those re-runs start.
OLD_VERSION, VERSION, NEW_VERSIONS = 1, 2, 10
#: A cursor no record of the input reaches: key 5 keeps its preload row, key 6 stays deleted.
KEPT_KEY, DELETED_KEY, HIGH_CURSOR = 5, 6, 1000

STREAMS = ("users", "events", "snap", "snapv", "items")
#: The table layouts swept: raw and final tables, and the raw tables alone (§4.5, `raw_only`).
LAYOUTS = ("raw_and_final", "raw_only")
OVERWRITE = ("snap", "snapv", "items")
VERSIONED = ("snapv", "items")
#: Records come in rounds of PERIOD, BATCH of each stream in a shuffled order, so that the
#: STATE at the end of a round finds every batch committed and can be emitted, and most others
#: cannot (SPEC §9: a STATE waits for every record before it).
PERIOD = BATCH * len(STREAMS)

PROPERTIES: dict[str, dict[str, Any]] = {
    "users": {
        "id": {"type": "integer"},
        "updated": {"type": ["null", "integer"]},
        "name": {"type": "string"},
        "amount": {"type": "number"},
        "seq": {"type": "integer"},
        "_ab_cdc_deleted_at": {"type": ["null", "string"], "format": "date-time"},
    },
    "events": {"seq": {"type": "integer"}, "kind": {"type": "string"}, "payload": {}},
    "snap": {"seq": {"type": "integer"}, "label": {"type": "string"}},
    "snapv": {"seq": {"type": "integer"}, "label": {"type": "string"}},
    "items": {"id": {"type": "integer"}, "val": {"type": "string"}, "seq": {"type": "integer"}},
}
KEYS_OF = {"users": ["id"], "items": ["id"]}

Message = dict[str, Any]


# --------------------------------------------------------------------------- the input


def schema_of(namespace: str, stream: str) -> Message:
    message: Message = {
        "type": "SCHEMA",
        "stream": f"{namespace}-{stream}",
        "schema": {"type": "object", "properties": PROPERTIES[stream]},
        "key_properties": KEYS_OF.get(stream, []),
    }
    if stream == "users":
        message["bookmark_properties"] = ["updated"]
    return message


def _schedule() -> list[str]:
    order: list[str] = []
    for round_number in range(-(-RECORDS // PERIOD)):
        streams = [stream for stream in STREAMS for _ in range(BATCH)]
        random.Random(round_number).shuffle(streams)
        order += streams
    return order


SCHEDULE = _schedule()


def stream_of(seq: int) -> str:
    """The stream of record number `seq` (`items` ends after ITEMS_LAST: `users` takes over)."""
    stream = SCHEDULE[seq - 1]
    return "users" if stream == "items" and seq > ITEMS_LAST else stream


def extracted(seq: int) -> str:
    return f"2024-06-01T10:{seq // 60:02d}:{seq % 60:02d}+00:00"


def data_of(seq: int) -> dict[str, Any]:
    """The record of input record number `seq` (1-based)."""
    stream = stream_of(seq)
    if stream == "users":
        # 37 is prime to 101: every record has its own cursor, above the preload's, and the
        # cursors of a key arrive out of order. Records 2, 9, 16... are deletes (two of them win
        # their key, one comes late); 9 and 49 have no cursor.
        return {
            "id": seq * 7 % KEYS,
            "updated": None if seq % 40 == 9 else 100 + seq * 37 % 101,
            "name": f"user {seq}",
            "amount": seq + 0.25,
            "seq": seq,
            "_ab_cdc_deleted_at": extracted(seq) if seq % 7 == 2 else None,
        }
    if stream == "events":
        kind = "click" if seq % 2 else "view"
        return {"seq": seq, "kind": kind, "payload": {"n": seq, "tags": ["t", str(seq)]}}
    if stream == "items":
        return {"id": seq % 6, "val": f"item {seq}", "seq": seq}
    return {"seq": seq, "label": f"{stream} {seq}"}


@dataclass(frozen=True)
class Line:
    """One input line, kept namespace-free: `message(namespace)` gives the Singer message."""

    kind: str  # SCHEMA, RECORD, STATE, ACTIVATE_VERSION
    stream: str = ""
    seq: int = 0
    version: int | None = None
    state: int = 0

    def message(self, namespace: str) -> Message:
        if self.kind == "SCHEMA":
            return schema_of(namespace, self.stream)
        if self.kind == "STATE":
            return {"type": "STATE", "value": {"pos": self.state}}
        name = f"{namespace}-{self.stream}"
        if self.kind == "ACTIVATE_VERSION":
            return {"type": "ACTIVATE_VERSION", "stream": name, "version": self.version}
        message = record(name, data_of(self.seq), extracted(self.seq))
        if self.version is not None:
            message["version"] = self.version
        return message


def record_line(seq: int, version: int | None = None) -> Line:
    stream = stream_of(seq)
    if version is None and stream in VERSIONED:
        version = VERSION
    return Line("RECORD", stream, seq, version)


def build_input() -> list[Line]:
    """The whole input: SCHEMAs, then the records with a STATE after every STATE_EVERY-th one
    (its value the STATE's own line index), the ACTIVATE_VERSIONs, and a final STATE."""
    lines = [Line("SCHEMA", stream) for stream in STREAMS]
    lines.append(Line("ACTIVATE_VERSION", "items", version=VERSION))
    for seq in range(1, RECORDS + 1):
        lines.append(record_line(seq))
        if seq == max(s for s in range(1, RECORDS + 1) if stream_of(s) == "items"):
            lines.append(Line("ACTIVATE_VERSION", "items", version=VERSION))
        if seq % STATE_EVERY == 0:
            lines.append(Line("STATE", state=len(lines)))
    lines.append(Line("ACTIVATE_VERSION", "snapv", version=VERSION))
    lines.append(Line("STATE", state=len(lines)))
    return lines


LINES = build_input()
SCHEMAS = len(STREAMS)
FINAL_STATE = len(LINES) - 1
#: Line index of every record, by record number.
POSITION = {line.seq: index for index, line in enumerate(LINES) if line.kind == "RECORD"}
#: Where each versioned stream's load ends (its last ACTIVATE_VERSION).
LOAD_END = {
    stream: max(
        i
        for i, line in enumerate(LINES)
        if line.kind == "ACTIVATE_VERSION" and line.stream == stream
    )
    for stream in VERSIONED
}


def preload(namespace: str) -> list[Message]:
    """An earlier run's load of every stream."""
    out = [schema_of(namespace, stream) for stream in STREAMS]

    def add(stream: str, data: dict[str, Any], version: int | None = None) -> None:
        message = record(f"{namespace}-{stream}", data, "2024-05-01T00:00:00+00:00")
        if version is not None:
            message["version"] = version
        out.append(message)

    user = {"name": "old", "amount": 0.5, "_ab_cdc_deleted_at": None}
    for key in range(KEYS):
        add("users", {**user, "id": key, "updated": 50 + key, "seq": -1 - key})
    add("users", {**user, "id": KEPT_KEY, "updated": HIGH_CURSOR, "seq": -20})
    deleted = {**user, "_ab_cdc_deleted_at": "2024-05-01T00:00:00+00:00"}
    add("users", {**deleted, "id": DELETED_KEY, "updated": HIGH_CURSOR - 1, "seq": -21})
    for number in range(1, 4):
        add("events", {"seq": -number, "kind": "old", "payload": {"n": -number}})
        add("snap", {"seq": -number, "label": f"old snap {number}"})
        add("snapv", {"seq": -number, "label": f"old snapv {number}"}, OLD_VERSION)
        add("items", {"id": number, "val": f"old item {number}", "seq": -number}, OLD_VERSION)
    for stream in VERSIONED:
        out.append(
            {"type": "ACTIVATE_VERSION", "stream": f"{namespace}-{stream}", "version": OLD_VERSION}
        )
    out.append({"type": "STATE", "value": {"preload": True}})
    return out


def config(db: PgDatabase, namespaces: list[str], layout: str) -> dict[str, Any]:
    methods = {f"{ns}-{stream}": "overwrite" for ns in namespaces for stream in OVERWRITE}
    return db.config(
        schema=DEFAULT_SCHEMA,
        table_layout=layout,
        batch_size_rows=BATCH,
        lock_wait_seconds=30,
        stream_load_methods=methods,
    )


# --------------------------------------------------------------------------- what a schema holds


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


@dataclass
class Tables:
    """Every committed row of one namespace: raw rows by raw id, final rows as dicts."""

    raw: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    final: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    #: Every table in the namespace's schema (leftover side tables show here).
    tables: list[str] = field(default_factory=list)


RAW_COLUMNS = ("raw_id", "extracted_at", "loaded_at", "data", "meta", "generation")


_ADMIN: dict[str, psycopg.Connection[Any]] = {}


def admin_of(db: PgDatabase) -> psycopg.Connection[Any]:
    """One superuser connection per database for the whole sweep (the server has few slots)."""
    if db.dbname not in _ADMIN or _ADMIN[db.dbname].closed:
        _ADMIN[db.dbname] = db.admin()
    return _ADMIN[db.dbname]


def read_tables(db: PgDatabase, namespace: str, layout: str) -> Tables:
    admin = admin_of(db)
    found = Tables()
    for stream in STREAMS:
        raw = raw_rows(admin, f"{namespace}_raw__stream_{stream}", RAW_SCHEMA)
        found.raw[stream] = {row[0]: dict(zip(RAW_COLUMNS, row, strict=True)) for row in raw}
        assert len(found.raw[stream]) == len(raw)
        if layout == "raw_only":
            found.final[stream] = []
            continue
        with admin.cursor(row_factory=dict_row) as cursor:
            cursor.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(namespace, stream)))
            found.final[stream] = cursor.fetchall()
    found.tables = sorted(
        name
        for (name,) in admin.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
            (namespace,),
        ).fetchall()
    )
    return found


def raw_content(row: dict[str, Any], generation: int | None = None) -> str:
    """A raw row without its id, load time and sync id: what its record put there (with
    `generation` for its table version)."""
    version = row["generation"] if generation is None else generation
    return canonical([row["data"], row["extracted_at"], row["meta"]["changes"], version])


def final_content(row: dict[str, Any], generation: int | None = None) -> str:
    """A final row without its raw id and sync id (and with `generation` for its version)."""
    values = {**row, "_airbyte_meta": row["_airbyte_meta"]["changes"]}
    del values["_airbyte_raw_id"]
    if generation is not None:
        values["_airbyte_generation_id"] = generation
    return canonical(values)


def shape(row: dict[str, Any]) -> str:
    """A final row's content whatever its table version: what a load put there."""
    return final_content(row, generation=-1)


# --------------------------------------------------------------------------- the reference


@dataclass
class Reference:
    layout: str
    db: PgDatabase
    tables: Tables
    #: Every overwrite table's contents after the preload (by `shape`).
    preloaded: dict[str, set[str]]
    #: The states the uninterrupted run emitted (not every state: one can overtake another).
    states: list[int]


@pytest.fixture(scope="module", params=LAYOUTS)
def reference(
    request: pytest.FixtureRequest, pg16: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Reference]:
    """One database for the sweep of a layout: every namespace preloaded, and one
    uninterrupted run of the whole input into namespace `ref`."""
    layout: str = request.param
    db = PgDatabase.create(pg16)
    try:
        namespaces = ["ref", *(namespace_of(i) for i in range(len(POINTS)))]
        workdir = tmp_path_factory.mktemp("sweep")
        for start in range(0, len(namespaces), 40):
            chunk = namespaces[start : start + 40]
            stdin = messages(*(m for ns in chunk for m in preload(ns)))
            run = run_target(config(db, chunk, layout), stdin, workdir / f"preload{start}")
            assert run.returncode == 0, run.stderr
        preloaded = read_tables(db, "ref", layout)
        stdin = messages(*(line.message("ref") for line in LINES))
        run = run_target(config(db, ["ref"], layout), stdin, workdir / "reference")
        assert run.returncode == 0, run.stderr
        states = [json.loads(text)["pos"] for text in run.stdout.splitlines()]
        assert states[-1] == FINAL_STATE
        yield Reference(
            layout=layout,
            states=states,
            db=db,
            tables=read_tables(db, "ref", layout),
            preloaded={s: {shape(row) for row in preloaded.final[s]} for s in OVERWRITE},
        )
    finally:
        db.drop()


def test_the_reference_is_what_the_spec_says(reference: Reference) -> None:
    """The uninterrupted run: per key the greatest cursor wins, preload rows included, deletes
    remove keys for good (§6.3); every event once (§6.2); each overwrite table holds its new
    load only, of version VERSION (§6.1). With raw tables alone, the raw tables hold the same
    records, none typed: every record of the incremental streams, the new load of the others."""
    tables = reference.tables
    if reference.layout == "raw_only":
        sent = {s: [seq for seq in range(1, RECORDS + 1) if stream_of(seq) == s] for s in STREAMS}
        for stream in STREAMS:
            old = [
                m["record"]["seq"]
                for m in preload("ref")
                if m["type"] == "RECORD" and m["stream"] == f"ref-{stream}"
            ]
            rows = tables.raw[stream].values()
            want = sent[stream] + (old if stream in ("users", "events") else [])
            assert sorted(row["data"]["seq"] for row in rows) == sorted(want), stream
            assert all(row["loaded_at"] is None for row in rows), stream
            if stream in VERSIONED:
                assert {row["generation"] for row in rows} == {VERSION}, stream
        assert tables.tables == []
        return
    winners: dict[int, tuple[int, dict[str, Any]]] = {}
    old = [
        m["record"] for m in preload("ref") if m["type"] == "RECORD" and m["stream"] == "ref-users"
    ]
    new = [data_of(seq) for seq in range(1, RECORDS + 1) if stream_of(seq) == "users"]
    for data in old + new:  # in arrival order, which breaks cursor ties (§6.3)
        cursor = -1 if data["updated"] is None else data["updated"]
        if data["id"] not in winners or cursor >= winners[data["id"]][0]:
            winners[data["id"]] = (cursor, data)
    expected = sorted(
        (key, data["seq"]) for key, (_, data) in winners.items() if not data["_ab_cdc_deleted_at"]
    )
    assert sorted((row["id"], row["seq"]) for row in tables.final["users"]) == expected
    assert KEPT_KEY in dict(expected)
    assert DELETED_KEY not in dict(expected)
    assert len(expected) <= KEYS - 3, "no delete of the input won its key"
    seqs = {s: [seq for seq in range(1, RECORDS + 1) if stream_of(seq) == s] for s in STREAMS}
    assert sorted(row["seq"] for row in tables.final["events"]) == [-3, -2, -1, *seqs["events"]]
    for stream in ("snap", "snapv"):
        assert sorted(row["seq"] for row in tables.final[stream]) == seqs[stream]
    last_item = {data_of(seq)["id"]: seq for seq in seqs["items"]}
    assert sorted((row["id"], row["seq"]) for row in tables.final["items"]) == sorted(
        last_item.items()
    )
    for stream in VERSIONED:
        assert {row["_airbyte_generation_id"] for row in tables.final[stream]} == {VERSION}
    for stream in STREAMS:
        assert all(row["loaded_at"] is not None for row in tables.raw[stream].values())
    assert sorted(tables.tables) == sorted(STREAMS)


# --------------------------------------------------------------------------- driving a live run


# --------------------------------------------------------------------------- kill points


@dataclass(frozen=True)
class Kill:
    """Where one run is killed. `at`: the number of input lines sent (of the first run's input;
    of a re-run's input when `fraction`, as a share of it); `delay`: seconds between the last
    line sent (or stdin closed) and SIGKILL."""

    kind: str  # idle, busy, state, eof
    at: float = 0
    delay: float = 0.0

    def __str__(self) -> str:
        if self.kind == "eof":
            return f"eof+{self.delay * 1000:.0f}ms"
        where = f"{self.at:.2f}" if isinstance(self.at, float) else str(self.at)
        if self.kind == "busy":
            return f"busy@{where}+{self.delay * 1000:.0f}ms"
        return f"{self.kind}@{where}"


@dataclass(frozen=True)
class Point:
    """A kill point: the first run's kill, and the re-run's when the run is killed twice."""

    first: Kill
    then: Kill | None = None
    why: str = ""

    def __str__(self) -> str:
        text = str(self.first) + (f"-then-{self.then}" if self.then else "")
        return f"{text}({self.why})" if self.why else text


def spread(candidates: list[Any], rng: random.Random) -> list[Any]:
    """The candidates in an order whose every prefix is spread over the whole list (a golden
    ratio walk from a seeded start)."""
    order: list[Any] = []
    start = rng.random()
    step = (math.sqrt(5) - 1) / 2
    taken: set[int] = set()
    j = 0
    while len(order) < len(candidates):
        index = int(((start + j * step) % 1) * len(candidates))
        j += 1
        while index in taken:
            index = (index + 1) % len(candidates)
        taken.add(index)
        order.append(candidates[index])
    return order


def choose_points(count: int, seed: int) -> list[Point]:
    """`count` kill points: the windows named in the module docstring first, then every kind
    in turn, each spread over the input."""
    rng = random.Random(seed)
    first_line = SCHEMAS + 1
    states = [i for i, line in enumerate(LINES) if line.kind == "STATE"]
    filled: list[int] = []
    seen: Counter[str] = Counter()
    for index, line in enumerate(LINES):
        if line.kind == "RECORD":
            seen[line.stream] += 1
            if seen[line.stream] % BATCH == 0:
                filled.append(index)
    activates = [i for i, line in enumerate(LINES) if line.kind == "ACTIVATE_VERSION"]
    special = [
        Point(Kill("idle", LOAD_END["items"] + 1), why="items swapped, no state since"),
        Point(Kill("eof", delay=rng.uniform(0.0, 0.03)), why="end of input"),
        Point(Kill("state", states[len(states) // 2]), why="just after a state"),
        Point(
            Kill("busy", states[len(states) // 3] + 1, rng.uniform(0.0, 0.05)),
            Kill("idle", rng.uniform(0.3, 0.9)),
            why="twice",
        ),
        Point(Kill("idle", filled[len(filled) // 2] + 1), why="a batch just committed"),
        Point(Kill("idle", LOAD_END["snapv"] + 1), why="snapv swapped, final state not sent"),
        Point(Kill("idle", first_line + 2), why="nothing committed"),
        Point(Kill("busy", len(LINES), rng.uniform(0.0, 0.1)), why="everything sent"),
    ]
    pools = [
        [Point(Kill("idle", n)) for n in spread(list(range(first_line, len(LINES) + 1)), rng)],
        [Point(Kill("state", n)) for n in spread(states, rng)],
        [
            Point(Kill("busy", n, rng.uniform(0.0, 0.08)))
            for n in spread(list(range(first_line, len(LINES) + 1)), rng)
        ],
        [Point(Kill("eof", delay=rng.uniform(0.0, 0.08))) for _ in range(len(LINES))],
        [Point(Kill("idle", n + 1), why="batch") for n in spread(filled, rng)],
        [Point(Kill("idle", n + 1), why="activate") for n in activates],
        [
            Point(
                Kill(rng.choice(["idle", "busy"]), n, rng.uniform(0.0, 0.05)),
                Kill(
                    rng.choice(["idle", "busy", "eof"]),
                    rng.uniform(0.05, 1.0),
                    rng.uniform(0.0, 0.08),
                ),
                why="twice",
            )
            for n in spread(list(range(first_line, len(LINES) + 1)), rng)
        ],
    ]
    chosen = special[:count]
    while len(chosen) < count and any(pools):
        for pool in pools:
            if pool and len(chosen) < count:
                candidate = pool.pop(0)
                if (candidate.first, candidate.then) not in {(p.first, p.then) for p in chosen}:
                    chosen.append(candidate)
    return chosen


POINTS = choose_points(KILL_POINTS, KILL_SEED)


def namespace_of(index: int) -> str:
    return f"k{index:03d}"


# --------------------------------------------------------------------------- crash and re-run


@dataclass
class Ledger:
    """What the killed runs left behind that the final comparison must allow for."""

    #: The line index of the last STATE emitted (0: none yet).
    resume: int = 0
    runs: int = 0
    #: The table version of the load each versioned stream's rows must end with.
    version: dict[str, int] = field(default_factory=lambda: dict.fromkeys(VERSIONED, VERSION))
    committed: Tables | None = None
    #: Raw / final contents of committed records that are sent again.
    extra_raw: dict[str, list[str]] = field(
        default_factory=lambda: {stream: [] for stream in STREAMS if stream != "snap"}
    )
    extra_final: dict[str, list[str]] = field(default_factory=lambda: {"events": [], "snapv": []})
    #: What each killed run did, for failure messages.
    history: list[str] = field(default_factory=list)


def plan(ledger: Ledger) -> list[Line]:
    """The input of the next run: SCHEMAs; `snap` from its start (no table versions: the tap
    restarts it); a new version of each versioned stream whose load had ended before the
    state; then every line after the state."""
    if ledger.runs == 0:
        return list(LINES)
    out = LINES[:SCHEMAS]
    resume = ledger.resume
    out += [
        line for line in LINES[SCHEMAS:resume] if line.kind == "RECORD" and line.stream == "snap"
    ]
    for stream in VERSIONED:
        if resume and LOAD_END[stream] < resume:
            version = NEW_VERSIONS + ledger.runs
            ledger.version[stream] = version
            if stream == "snapv":
                ledger.extra_final["snapv"].clear()
            ledger.extra_raw[stream].clear()
            seqs = [line.seq for line in LINES if line.kind == "RECORD" and line.stream == stream]
            out += [record_line(seq, version) for seq in seqs]
            out.append(Line("ACTIVATE_VERSION", stream, version=version))
    out += LINES[resume + 1 if resume else SCHEMAS :]
    if resume == FINAL_STATE:
        out.append(LINES[FINAL_STATE])
    return out


def drive(
    live: LiveRun, namespace: str, lines: list[Line], kill: Kill, rerun: bool, emitted: list[int]
) -> None:
    """Feed the run its input up to the kill point (`emitted`: the states an uninterrupted run
    emits, for a kill at the first of them at or after the point)."""

    def send(part: list[Line]) -> None:
        live.send(*(line.message(namespace) for line in part))

    at = round(kill.at * len(lines)) if rerun else int(kill.at)
    at = max(SCHEMAS + 1, min(at, len(lines)))
    if kill.kind == "idle":
        send(lines[:at])
        live.wait_until_idle(60)
    elif kill.kind == "busy":
        send(lines[:SCHEMAS])
        live.wait_until_idle(60)
        send(lines[SCHEMAS:at])
        clock.sleep(kill.delay)
    elif kill.kind == "state":
        send(lines)
        state = min(pos for pos in emitted if pos >= kill.at)
        if state == FINAL_STATE:  # emitted at the end of input only
            assert live.process.stdin is not None
            live.process.stdin.close()
        live.wait_for_state({"pos": state})
    else:
        send(lines[:-3])
        live.wait_until_idle(60)
        send(lines[-3:])
        assert live.process.stdin is not None
        live.process.stdin.close()
        clock.sleep(kill.delay)


def crash(
    db: PgDatabase,
    namespace: str,
    workdir: Path,
    ledger: Ledger,
    reference: Reference,
    kill: Kill,
    label: str,
) -> None:
    """One run from the ledger's state, killed at `kill`; book what it committed."""
    lines = plan(ledger)
    layout = reference.layout
    before = ledger.committed or read_tables(db, namespace, layout)
    with live_run(config(db, [namespace], layout), workdir) as live:
        drive(live, namespace, lines, kill, ledger.runs > 0, reference.states)
        live.process.send_signal(signal.SIGKILL)
        live.process.wait(timeout=60)
        returncode = live.finish()
        stderr = live.stderr
    states = [json.loads(text)["pos"] for text in live.stdout if text.strip()]
    ledger.runs += 1
    ledger.history.append(
        f"run {ledger.runs} killed at {kill} of {len(lines)} lines: exit {returncode},"
        f" states {states}"
    )
    assert returncode in (-signal.SIGKILL, 0), f"{label}: exit {returncode}\n{stderr}"
    sent = [line.state for line in lines if line.kind == "STATE"]
    assert states == [pos for pos in sent if pos in states], f"{label}: states {states}"
    wait_for_no_loader(admin_of(db), db.role.name)
    after = read_tables(db, namespace, layout)
    resume = states[-1] if states else ledger.resume
    assert resume >= ledger.resume, f"{label}: {states}"

    # No committed raw row of the incremental streams lost or changed (typing may finish).
    for stream in ("users", "events"):
        for raw_id, row in before.raw[stream].items():
            now = after.raw[stream].get(raw_id)
            assert now is not None, f"{label}: committed raw row {raw_id} of {stream} lost"
            assert raw_content(now) == raw_content(row), f"{label}: raw row {raw_id} changed"
    kept = {row["_airbyte_raw_id"] for row in after.final["events"]}
    lost = [row for row in before.final["events"] if row["_airbyte_raw_id"] not in kept]
    assert not lost, f"{label}: committed event rows lost: {lost}"
    # Every record before the last emitted state is committed to its raw table.
    cut = next(i for i, line in enumerate(lines) if line.state == resume) if states else 0
    for stream in STREAMS:
        wanted = {
            line.seq for line in lines[:cut] if line.kind == "RECORD" and line.stream == stream
        }
        present = {row["data"]["seq"] for row in after.raw[stream].values()}
        assert wanted <= present, f"{label}: {stream} records {sorted(wanted - present)} not in raw"
    # A live overwrite table holds its old rows or a whole load, never a mix (§6.1).
    for stream in OVERWRITE:
        contents = {shape(row) for row in after.final[stream]}
        whole = {shape(row) for row in reference.tables.final[stream]}
        assert contents in (reference.preloaded[stream], whole), (
            f"{label}: {stream} holds neither its old rows nor a whole load:"
            f" {sorted(row['seq'] for row in after.final[stream])}"
        )
    # Rows this run committed after that state come again in the next run.
    for stream in ("users", "events"):
        for raw_id, row in after.raw[stream].items():
            if raw_id not in before.raw[stream] and POSITION[row["data"]["seq"]] > resume:
                ledger.extra_raw[stream].append(raw_content(row))
    old_events = {row["_airbyte_raw_id"] for row in before.final["events"]}
    for row in after.final["events"]:
        if row["_airbyte_raw_id"] not in old_events and POSITION[row["seq"]] > resume:
            ledger.extra_final["events"].append(final_content(row))
    for raw_id, row in after.raw["snapv"].items():
        if (
            raw_id not in before.raw["snapv"]
            and row["generation"] == ledger.version["snapv"]
            and POSITION[row["data"]["seq"]] > resume
        ):
            ledger.extra_final["snapv"].append(final_content(typed_snapv(row)))
    for stream in VERSIONED:
        for raw_id, row in after.raw[stream].items():
            if (
                raw_id not in before.raw[stream]
                and row["generation"] == ledger.version[stream]
                and POSITION[row["data"]["seq"]] > resume
            ):
                ledger.extra_raw[stream].append(raw_content(row))
    ledger.resume = resume
    ledger.committed = after


def typed_snapv(raw: dict[str, Any]) -> dict[str, Any]:
    """The final row a raw `snapv` row types to."""
    return {
        "seq": raw["data"]["seq"],
        "label": raw["data"]["label"],
        "_airbyte_raw_id": raw["raw_id"],
        "_airbyte_extracted_at": raw["extracted_at"],
        "_airbyte_meta": raw["meta"],
        "_airbyte_generation_id": raw["generation"],
    }


def rerun_and_compare(
    db: PgDatabase,
    namespace: str,
    workdir: Path,
    ledger: Ledger,
    reference: Reference,
    label: str,
) -> None:
    """Re-run from the last emitted state to the end; compare with the uninterrupted run."""
    lines = plan(ledger)
    label = f"{label}; {'; '.join(ledger.history)}; re-run from state {ledger.resume}"
    stdin = messages(*(line.message(namespace) for line in lines))
    layout = reference.layout
    run = run_target(config(db, [namespace], layout), stdin, workdir)
    assert run.returncode == 0, f"{label}: {run.stderr}"
    assert run.stdout.splitlines()[-1] == json.dumps({"pos": FINAL_STATE}), label
    got = read_tables(db, namespace, layout)
    ref = reference.tables
    assert ledger.committed is not None
    for stream in ("users", "events"):
        for raw_id in ledger.committed.raw[stream]:
            assert raw_id in got.raw[stream], f"{label}: committed raw row {raw_id} lost"
        want = [raw_content(row) for row in ref.raw[stream].values()] + ledger.extra_raw[stream]
        assert sorted(raw_content(row) for row in got.raw[stream].values()) == sorted(want), (
            f"{label}: raw table of {stream}"
        )
    if layout == "raw_only":
        # The raw tables are all there is: a full refresh's hold its last load.
        for stream in OVERWRITE:
            version = ledger.version.get(stream)
            want = [raw_content(row, version) for row in ref.raw[stream].values()]
            want += ledger.extra_raw.get(stream, [])
            have = [raw_content(row) for row in got.raw[stream].values()]
            missing, surplus = Counter(want) - Counter(have), Counter(have) - Counter(want)
            differences = {
                "missing": sorted(json.loads(text)[0]["seq"] for text in missing.elements()),
                "surplus": sorted(json.loads(text)[0]["seq"] for text in surplus.elements()),
            }
            assert differences == {"missing": [], "surplus": []}, (
                f"{label}: raw table {stream}, records {differences}"
            )
        for stream in STREAMS:
            rows = got.raw[stream].values()
            assert all(row["loaded_at"] is None for row in rows), f"{label}: {stream} typed"
        assert got.tables == [], f"{label}: tables made: {got.tables}"
        return
    for stream in STREAMS:
        version = ledger.version.get(stream)
        want = [final_content(row, version) for row in ref.final[stream]]
        want += ledger.extra_final.get(stream, [])
        have = [final_content(row) for row in got.final[stream]]
        missing = Counter(want) - Counter(have)
        surplus = Counter(have) - Counter(want)
        differences = {"missing": seqs_of(missing), "surplus": seqs_of(surplus)}
        assert differences == {"missing": [], "surplus": []}, (
            f"{label}: final table {stream}, records {differences}"
        )
        raw = got.raw[stream]
        assert all(row["loaded_at"] is not None for row in raw.values()), f"{label}: untyped"
        for row in got.final[stream]:
            source = raw.get(row["_airbyte_raw_id"])
            assert source is not None, f"{label}: a {stream} row without its raw row"
            assert source["data"]["seq"] == row["seq"], f"{label}: {stream} row of another record"
    assert sorted(got.tables) == sorted(STREAMS), f"{label}: tables left: {got.tables}"


def seqs_of(contents: Counter[str]) -> list[int]:
    """The record numbers of final-row contents, for messages."""
    return sorted(json.loads(text)["seq"] for text in contents.elements())


@pytest.mark.parametrize(
    ("index", "point"), list(enumerate(POINTS)), ids=[str(point) for point in POINTS]
)
def test_kill_and_resume(index: int, point: Point, reference: Reference, tmp_path: Path) -> None:
    db, namespace = reference.db, namespace_of(index)
    label = f"kill point {point} (seed {KILL_SEED}, namespace {namespace})"
    ledger = Ledger()
    crash(db, namespace, tmp_path / "crash1", ledger, reference, point.first, label)
    if point.then is not None:
        crash(db, namespace, tmp_path / "crash2", ledger, reference, point.then, label + " 2nd")
    rerun_and_compare(db, namespace, tmp_path / "rerun", ledger, reference, label)
