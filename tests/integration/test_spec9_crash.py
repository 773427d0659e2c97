"""SPEC §9 crash safety: a run killed at any point (SIGKILL included) loses no committed record,
and a re-run from the last STATE it emitted leaves a dedup final table exactly as one
uninterrupted run leaves it, and an append table with only the re-delivered rows. SIGTERM drains:
the pending records are committed and the latest STATE emitted before the process exits.

The input is fixed: 60 records, a STATE `{"pos": i}` after every fifth record (i = the number of
the last record before it), in two streams: `users` (append-dedup on `id`, cursor `updated`, keys
repeated, cursors arriving out of order) and `events` (append). Every record carries its number
in `seq`, and an explicit `time_extracted`, so each row can be traced to its record and an
uninterrupted run into a database of its own is the reference to compare with.

A re-run "from the last emitted state" sends the SCHEMA messages, then every line after the STATE
it resumes from. Records committed by the killed run after that STATE are delivered again: their
raw rows are expected twice, and so are their rows in the append table; nothing else may differ.

Kill points: with the first batch's COPY open (nothing committed); with a COPY open right after
a state; idle, with batches committed past the last state that could be emitted; mid-input while
the target reads and writes; twice in a row; between a batch's final-table commit and its raw
commit (held open by a trigger); inside a full refresh's swap (held by a reader's lock).
"""

from __future__ import annotations

import json
import signal
import time as clock
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from servers import PgDatabase, PostgresServer

from .targetrun import (
    LiveRun,
    live_run,
    messages,
    raw_rows,
    record,
    run_target,
    schema_message,
    wait_for_no_loader,
)

pytestmark = pytest.mark.integration

SCHEMA = "tap_data"
RAW_SCHEMA = "airbyte_internal"
RECORDS = 60
STATE_EVERY = 5
BATCH = 7
KEYS = 11

USERS = {
    "type": "SCHEMA",
    "stream": "users",
    "schema": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "updated": {"type": "integer"},
            "name": {"type": "string"},
            "amount": {"type": "number"},
            "seq": {"type": "integer"},
        },
    },
    "key_properties": ["id"],
    "bookmark_properties": ["updated"],
}
EVENTS = schema_message(
    "events", {"seq": {"type": "integer"}, "kind": {"type": "string"}, "payload": {}}
)
STREAMS = {"users": "tap_data_raw__stream_users", "events": "tap_data_raw__stream_events"}
FINAL_QUERIES = {
    "users": "SELECT id, updated, name, amount, seq, _airbyte_raw_id, _airbyte_extracted_at,"
    " _airbyte_meta, _airbyte_generation_id FROM tap_data.users",
    "events": "SELECT seq, kind, payload, _airbyte_raw_id, _airbyte_extracted_at,"
    " _airbyte_meta, _airbyte_generation_id FROM tap_data.events",
}
#: Position of `_airbyte_raw_id` in the rows of FINAL_QUERIES.
FINAL_RAW_ID = {"users": 5, "events": 3}

ACTIVE_COPY = (
    "SELECT count(*) FROM pg_stat_activity WHERE usename = %s AND state = 'active'"
    " AND query LIKE 'COPY%%'"
)
BLOCKED_TRUNCATE = (
    "SELECT count(*) FROM pg_stat_activity WHERE usename = %s AND wait_event_type = 'Lock'"
    " AND query LIKE 'TRUNCATE%%'"
)


# --------------------------------------------------------------------------- the input


def stream_of(seq: int) -> str:
    return "events" if seq % 3 == 0 else "users"


def record_of(seq: int) -> dict[str, Any]:
    """Record number `seq` (1-based) of the input."""
    extracted = f"2024-06-01T10:{seq // 60:02d}:{seq % 60:02d}+00:00"
    if stream_of(seq) == "events":
        data: dict[str, Any] = {
            "seq": seq,
            "kind": "click" if seq % 2 else "view",
            "payload": {"n": seq, "tags": ["t", str(seq)]},
        }
        return record("events", data, extracted)
    # 11 keys, each seen several times; 37 is prime to 61, so every record has its own cursor
    # and the cursors of a key arrive out of order.
    data = {
        "id": seq * 7 % KEYS,
        "updated": seq * 37 % 61,
        "name": f"user {seq}",
        "amount": seq + 0.25,
        "seq": seq,
    }
    return record("users", data, extracted)


def lines(after: int = 0, upto: int = RECORDS) -> list[dict[str, Any]]:
    """The SCHEMA messages, then records after..upto with the STATEs that follow them."""
    out: list[dict[str, Any]] = [USERS, EVENTS]
    for seq in range(after + 1, upto + 1):
        out.append(record_of(seq))
        if seq % STATE_EVERY == 0:
            out.append({"type": "STATE", "value": {"pos": seq}})
    return out


def config(db: PgDatabase, **overrides: Any) -> dict[str, Any]:
    return db.config(schema=SCHEMA, batch_size_rows=BATCH, lock_wait_seconds=30, **overrides)


# --------------------------------------------------------------------------- what a database holds


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


@dataclass
class Tables:
    """Every committed row of both streams: raw rows and final rows by `_airbyte_raw_id`."""

    raw: dict[str, dict[str, tuple[Any, ...]]] = field(default_factory=dict)
    final: dict[str, dict[str, tuple[Any, ...]]] = field(default_factory=dict)
    #: Every final row as a list, for comparisons that count duplicates.
    final_rows: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)


def read_tables(db: PgDatabase) -> Tables:
    admin = db.admin()
    tables = Tables()
    for stream, raw_table in STREAMS.items():
        found = admin.execute(
            "SELECT to_regclass(%s), to_regclass(%s)",
            (f"{RAW_SCHEMA}.{raw_table}", f"{SCHEMA}.{stream}"),
        ).fetchone()
        assert found is not None
        raw = raw_rows(admin, raw_table) if found[0] is not None else []
        tables.raw[stream] = {row[0]: tuple(row) for row in raw}
        assert len(tables.raw[stream]) == len(raw)
        final = admin.execute(FINAL_QUERIES[stream]).fetchall() if found[1] is not None else []
        tables.final_rows[stream] = [tuple(row) for row in final]
        tables.final[stream] = {row[FINAL_RAW_ID[stream]]: tuple(row) for row in final}
        assert len(tables.final[stream]) == len(final), "two final rows share a raw id"
    return tables


def raw_content(row: tuple[Any, ...]) -> str:
    """A raw row without its id, load time and sync id: what the record put there."""
    _, extracted_at, _, data, meta, generation = row
    return canonical([data, extracted_at, meta["changes"], generation])


def final_content(stream: str, row: tuple[Any, ...]) -> str:
    """A final row without its raw id and sync id."""
    values = list(row)
    del values[FINAL_RAW_ID[stream]]
    meta_at = FINAL_RAW_ID[stream] + 1  # after the deletion: extracted_at, then meta
    values[meta_at] = values[meta_at]["changes"]
    return canonical(values)


def seq_of_raw(row: tuple[Any, ...]) -> int:
    return int(row[3]["seq"])


def seq_of_final(stream: str, row: tuple[Any, ...]) -> int:
    return int(row[4] if stream == "users" else row[0])


def wait_for_loader_query(db: PgDatabase, live: LiveRun, query: str, timeout: float = 30) -> None:
    deadline = clock.monotonic() + timeout
    while (found := db.admin().execute(query, (db.role.name,)).fetchone()) and not found[0]:
        assert live.process.poll() is None, live.stderr
        assert clock.monotonic() < deadline, f"no loader session matching {query!r}"
        clock.sleep(0.02)


# --------------------------------------------------------------------------- driving a live run


def stop(live: LiveRun, signum: int = signal.SIGKILL) -> tuple[int, list[Any]]:
    """Signal the run, wait for its end; its exit code and every state it emitted."""
    live.process.send_signal(signum)
    live.process.wait(timeout=60)
    returncode = live.finish()
    return returncode, [json.loads(line) for line in live.stdout if line.strip()]


# --------------------------------------------------------------------------- the reference


@dataclass
class Reference:
    states: list[Any]
    tables: Tables


@pytest.fixture(scope="module")
def reference(pg16: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Reference:
    """One uninterrupted run of the whole input, into a database of its own."""
    db = PgDatabase.create(pg16)
    try:
        run = run_target(config(db), messages(*lines()), tmp_path_factory.mktemp("reference"))
        assert run.returncode == 0, run.stderr
        states = [json.loads(line) for line in run.stdout.splitlines()]
        assert states, run.stdout
        assert states[-1] == {"pos": RECORDS}
        return Reference(states=states, tables=read_tables(db))
    finally:
        db.drop()


def test_the_reference_is_what_the_spec_says(reference: Reference) -> None:
    """The uninterrupted run itself: one row per key, the greatest cursor wins (§6.3); every
    event once (§6.2); every record once in raw, typed."""
    tables = reference.tables
    winners: dict[int, dict[str, Any]] = {}
    for seq in range(1, RECORDS + 1):
        if stream_of(seq) == "users":
            data = record_of(seq)["record"]
            if data["id"] not in winners or data["updated"] > winners[data["id"]]["updated"]:
                winners[data["id"]] = data
    users = sorted(tables.final_rows["users"])
    assert [(row[0], row[1], row[4]) for row in users] == [
        (key, data["updated"], data["seq"]) for key, data in sorted(winners.items())
    ]
    assert sorted(row[0] for row in tables.final_rows["events"]) == list(range(3, RECORDS + 1, 3))
    for stream in STREAMS:
        raw = tables.raw[stream].values()
        expected = [seq for seq in range(1, RECORDS + 1) if stream_of(seq) == stream]
        assert sorted(seq_of_raw(row) for row in raw) == expected
        assert all(row[2] is not None for row in raw), "raw rows left untyped"


# --------------------------------------------------------------------------- crash and re-run


@dataclass
class Ledger:
    """What the killed runs left behind that the final comparison must allow for."""

    #: The position the next run resumes from (0: from the start).
    resume: int = 0
    #: Every row committed so far, by stream and raw id (none may be lost).
    committed: Tables = field(default_factory=Tables)
    #: Raw / final contents of committed records that will be delivered again.
    redelivered_raw: dict[str, list[str]] = field(
        default_factory=lambda: {stream: [] for stream in STREAMS}
    )
    redelivered_final: list[str] = field(default_factory=list)


def assert_nothing_lost(before: Tables, after: Tables) -> None:
    """Every row committed before is still there, unchanged (final rows of the append stream
    too; a dedup row may be replaced by a newer record of its key)."""
    for stream in STREAMS:
        missing = [raw_id for raw_id in before.raw[stream] if raw_id not in after.raw[stream]]
        assert not missing, f"committed raw rows of {stream} lost: {missing}"
        for raw_id, row in before.raw[stream].items():
            assert after.raw[stream][raw_id] == row, f"committed raw row {raw_id} changed"
    for raw_id, row in before.final["events"].items():
        assert after.final["events"].get(raw_id) == row, f"committed event row {raw_id} lost"


def crash(
    db: PgDatabase,
    workdir: Path,
    ledger: Ledger,
    drive: Callable[[PgDatabase, LiveRun, int], None],
    signum: int = signal.SIGKILL,
    after_kill: Callable[[], None] | None = None,
) -> tuple[int, list[Any]]:
    """Run the target from `ledger.resume`, drive it to the kill point, kill it, and book
    what it committed."""
    before = ledger.committed if ledger.committed.raw else read_tables(db)
    with live_run(config(db), workdir) as live:
        drive(db, live, ledger.resume)
        returncode, states = stop(live, signum)
        stderr = live.stderr
    if after_kill is not None:
        after_kill()
    wait_for_no_loader(db.admin(), db.role.name)
    after = read_tables(db)
    assert_nothing_lost(before, after)
    resume = states[-1]["pos"] if states else ledger.resume
    assert resume >= ledger.resume, states
    # Every record before the emitted state is committed (to raw and to the final table).
    for stream in STREAMS:
        committed = {seq_of_raw(row) for row in after.raw[stream].values()}
        wanted = {seq for seq in range(1, resume + 1) if stream_of(seq) == stream}
        assert wanted <= committed, (stream, sorted(wanted - committed), stderr)
    events_final = {seq_of_final("events", row) for row in after.final["events"].values()}
    assert {seq for seq in range(3, resume + 1, 3)} <= events_final
    # Rows this run committed after that state come again in the next run.
    for stream in STREAMS:
        for raw_id, row in after.raw[stream].items():
            if raw_id not in before.raw[stream] and seq_of_raw(row) > resume:
                ledger.redelivered_raw[stream].append(raw_content(row))
    for raw_id, row in after.final["events"].items():
        if raw_id not in before.final["events"] and seq_of_final("events", row) > resume:
            ledger.redelivered_final.append(final_content("events", row))
    ledger.resume = resume
    ledger.committed = after
    return returncode, states


def rerun_and_compare(db: PgDatabase, workdir: Path, ledger: Ledger, reference: Reference) -> None:
    """Re-run from the last emitted state to the end; compare with the uninterrupted run."""
    run = run_target(config(db), messages(*lines(after=ledger.resume)), workdir)
    assert run.returncode == 0, run.stderr
    assert [json.loads(line) for line in run.stdout.splitlines()][-1] == {"pos": RECORDS}
    final = read_tables(db)
    assert_nothing_lost(ledger.committed, final)
    ref = reference.tables
    for stream in STREAMS:
        got = sorted(raw_content(row) for row in final.raw[stream].values())
        want = sorted(
            [raw_content(row) for row in ref.raw[stream].values()] + ledger.redelivered_raw[stream]
        )
        assert got == want, f"raw table of {stream}"
        assert all(row[2] is not None for row in final.raw[stream].values()), "untyped raw rows"
    # Dedup: exactly the uninterrupted run's rows, each the typed copy of one of its raw rows.
    assert sorted(final_content("users", row) for row in final.final_rows["users"]) == sorted(
        final_content("users", row) for row in ref.final_rows["users"]
    )
    for raw_id, row in final.final["users"].items():
        assert raw_id in final.raw["users"], "a final row without its raw row"
        assert final.raw["users"][raw_id][3]["seq"] == row[4]
    # Append: the uninterrupted run's rows plus the re-delivered ones, nothing else.
    assert sorted(final_content("events", row) for row in final.final_rows["events"]) == sorted(
        [final_content("events", row) for row in ref.final_rows["events"]]
        + ledger.redelivered_final
    )


# --------------------------------------------------------------------------- kill points


def first_batch_open(db: PgDatabase, live: LiveRun, resume: int) -> None:
    """Three records sent, no batch full: killed while their COPY is open."""
    live.send(*lines(after=resume, upto=3))
    wait_for_loader_query(db, live, ACTIVE_COPY)


def copy_open_after_a_state(db: PgDatabase, live: LiveRun, resume: int) -> None:
    """A state emitted, then killed as soon as the next batch's COPY is open."""
    live.send(*lines(after=resume, upto=24))
    live.wait_for_state({"pos": 20})
    wait_for_loader_query(db, live, ACTIVE_COPY)


def idle_with_pending_records(db: PgDatabase, live: LiveRun, resume: int) -> None:
    """38 records sent and handled: some batches committed past the last emitted state, the
    rest pending in open COPYs; killed while waiting for input."""
    live.send(*lines(after=resume, upto=38))
    live.wait_until_idle()


def busy(position: int) -> Callable[[PgDatabase, LiveRun, int], None]:
    """The whole input sent at once (not closed); killed the moment state `position` is out,
    while the target is still reading and writing."""

    def drive(db: PgDatabase, live: LiveRun, resume: int) -> None:
        live.send(*lines(after=resume))
        live.wait_for_state({"pos": position})

    return drive


def test_sigkill_with_the_first_batch_open(
    pg_db: PgDatabase, tmp_path: Path, reference: Reference
) -> None:
    ledger = Ledger()
    returncode, states = crash(pg_db, tmp_path / "crash", ledger, first_batch_open)
    assert returncode == -signal.SIGKILL
    assert states == []
    # Nothing was committed: no raw row, no final row; the re-run starts from the beginning.
    assert all(not rows for rows in ledger.committed.raw.values())
    assert all(not rows for rows in ledger.committed.final.values())
    rerun_and_compare(pg_db, tmp_path / "rerun", ledger, reference)


def test_sigkill_with_a_copy_open_after_a_state(
    pg_db: PgDatabase, tmp_path: Path, reference: Reference
) -> None:
    ledger = Ledger()
    returncode, states = crash(pg_db, tmp_path / "crash", ledger, copy_open_after_a_state)
    assert returncode == -signal.SIGKILL
    assert states, "no state emitted before the kill"
    assert states[-1]["pos"] >= 20, states
    rerun_and_compare(pg_db, tmp_path / "rerun", ledger, reference)


def test_sigkill_with_records_committed_past_the_last_state(
    pg_db: PgDatabase, tmp_path: Path, reference: Reference
) -> None:
    ledger = Ledger()
    returncode, states = crash(pg_db, tmp_path / "crash", ledger, idle_with_pending_records)
    assert returncode == -signal.SIGKILL
    assert states, "no state emitted before the kill"
    # The point of this kill: batches of one stream were committed after the last state that
    # could be emitted (the other stream still had records pending), so they come again.
    assert sum(len(rows) for rows in ledger.redelivered_raw.values()) > 0
    rerun_and_compare(pg_db, tmp_path / "rerun", ledger, reference)


def test_sigkill_mid_input(pg_db: PgDatabase, tmp_path: Path, reference: Reference) -> None:
    middle = reference.states[len(reference.states) // 2]["pos"]
    ledger = Ledger()
    returncode, states = crash(pg_db, tmp_path / "crash", ledger, busy(middle))
    assert returncode == -signal.SIGKILL
    assert states[-1]["pos"] >= middle
    rerun_and_compare(pg_db, tmp_path / "rerun", ledger, reference)


def test_sigkill_twice_then_rerun(pg_db: PgDatabase, tmp_path: Path, reference: Reference) -> None:
    """Killed mid-input, re-run from its state and killed again, then re-run to the end."""
    early, late = reference.states[0]["pos"], reference.states[-2]["pos"]
    ledger = Ledger()
    crash(pg_db, tmp_path / "crash1", ledger, busy(early))
    assert ledger.resume >= early
    crash(pg_db, tmp_path / "crash2", ledger, busy(max(late, ledger.resume + STATE_EVERY)))
    rerun_and_compare(pg_db, tmp_path / "rerun", ledger, reference)


HOLD_LOCK = 4242
HOLD_COMMIT = f"""
CREATE FUNCTION public.hold_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared({HOLD_LOCK});
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER hold_commit AFTER INSERT ON {RAW_SCHEMA}.{STREAMS["users"]}
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION public.hold_commit();
"""
BLOCKED_COMMIT = (
    "SELECT pid FROM pg_stat_activity WHERE usename = %s AND wait_event_type = 'Lock'"
    " AND wait_event = 'advisory' AND query = 'COMMIT'"
)


def test_sigkill_between_the_final_and_the_raw_commit(
    pg_db: PgDatabase, tmp_path: Path, reference: Reference
) -> None:
    """A batch commits its final-table transaction, then its raw one (loading.py); killed in
    between, the final table holds typed rows whose raw rows were never committed and whose
    state was never emitted. The re-run re-delivers them: the dedup table must end as the
    uninterrupted run's, every final row pointing at a raw row that exists.

    The window is held open by a deferred constraint trigger on the users raw table that
    waits, at COMMIT, for an advisory lock this test holds."""
    empty = run_target(config(pg_db), messages(USERS, EVENTS), tmp_path / "tables")
    assert empty.returncode == 0, empty.stderr
    admin = pg_db.admin()
    admin.execute(HOLD_COMMIT)
    holder = pg_db.admin()

    def hold_the_third_users_batch(db: PgDatabase, live: LiveRun, resume: int) -> None:
        live.send(*lines(after=resume, upto=24))
        live.wait_for_state({"pos": 20})
        holder.execute("SELECT pg_advisory_lock(%s)", (HOLD_LOCK,))
        live.send(*lines(after=24, upto=38)[2:])  # users batch 3 commits at record 31
        wait_for_loader_query(db, live, BLOCKED_COMMIT.replace("SELECT pid", "SELECT count(*)"))

    def end_the_raw_transaction() -> None:
        # The killed run's raw COMMIT is still waiting in the server: end it, uncommitted.
        for (pid,) in admin.execute(BLOCKED_COMMIT, (pg_db.role.name,)).fetchall():
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        holder.execute("SELECT pg_advisory_unlock(%s)", (HOLD_LOCK,))

    ledger = Ledger()
    returncode, states = crash(
        pg_db,
        tmp_path / "crash",
        ledger,
        hold_the_third_users_batch,
        after_kill=end_the_raw_transaction,
    )
    admin.execute(f"DROP TRIGGER hold_commit ON {RAW_SCHEMA}.{STREAMS['users']}")
    admin.execute("DROP FUNCTION public.hold_commit()")
    assert returncode == -signal.SIGKILL
    assert states == [{"pos": 20}], states
    # The window was hit: users 22..31 are typed in the final table, not in the raw table.
    committed = ledger.committed
    assert max(seq_of_raw(row) for row in committed.raw["users"].values()) == 20
    orphans = [
        row[4] for row in committed.final_rows["users"] if row[5] not in committed.raw["users"]
    ]
    assert orphans, "no final row without its raw row: the kill missed the window"
    assert all(22 <= seq <= 31 for seq in orphans), orphans
    rerun_and_compare(pg_db, tmp_path / "rerun", ledger, reference)


# --------------------------------------------------------------------------- SIGTERM


def test_sigterm_drains_then_exits(pg_db: PgDatabase, tmp_path: Path, reference: Reference) -> None:
    """SIGTERM with batches open in both streams: the SDK's handler drains every sink (the
    pending records are committed), emits the latest state and exits 0 (singer-sdk
    `Target._handle_termination`: "draining all sinks", then `sys.exit(0)`; SPEC §3.2 keeps that
    behaviour)."""

    def twelve_records(db: PgDatabase, live: LiveRun, resume: int) -> None:
        live.send(*lines(after=resume, upto=12))
        live.wait_until_idle()
        # Records 11 and 12 (and earlier events) are still pending: not in the tables yet.
        seqs = {seq_of_raw(row) for rows in read_tables(db).raw.values() for row in rows.values()}
        assert 11 not in seqs
        assert 12 not in seqs

    ledger = Ledger()
    returncode, states = crash(
        pg_db, tmp_path / "term", ledger, twelve_records, signum=signal.SIGTERM
    )
    stderr = (tmp_path / "term" / "stderr").read_text()
    assert returncode == 0, stderr
    assert "Received termination signal 15, draining all sinks" in stderr
    assert "Traceback" not in stderr
    # The latest state received was emitted, and every record sent is committed.
    assert states[-1] == {"pos": 10}, states
    tables = ledger.committed
    for stream in STREAMS:
        wanted = [seq for seq in range(1, 13) if stream_of(seq) == stream]
        assert sorted(seq_of_raw(row) for row in tables.raw[stream].values()) == wanted
    assert sorted(row[0] for row in tables.final_rows["events"]) == [3, 6, 9, 12]
    assert {row[4] for row in tables.final_rows["users"]} <= set(range(1, 13))
    assert 11 in {row[4] for row in tables.final_rows["users"]}
    # Resuming from that state completes the load like an uninterrupted run.
    rerun_and_compare(pg_db, tmp_path / "rerun", ledger, reference)


# --------------------------------------------------------------------------- full refresh swap

ITEMS = schema_message("items", {"id": {"type": "integer"}, "v": {"type": "string"}}, ["id"])


def items(
    first: int, last: int, label: str, state_every: int = 0, version: int | None = None
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for number in range(first, last + 1):
        message = record("items", {"id": number, "v": f"{label} {number}"})
        if version is not None:
            message["version"] = version
        out.append(message)
        if state_every and number % state_every == 0:
            out.append({"type": "STATE", "value": {"pos": number}})
    return out


def items_final(db: PgDatabase) -> list[tuple[Any, ...]]:
    return db.admin().execute("SELECT id, v FROM tap_data.items ORDER BY id").fetchall()


def test_sigkill_during_the_overwrite_swap(pg_db: PgDatabase, tmp_path: Path) -> None:
    """A full refresh killed while it replaces the final table's rows: the old rows stay
    untouched; the re-run from the last emitted state, whose records carry the same table
    version (SPEC §6.1), continues the load and ends it."""
    overwrite = {"stream_load_methods": {"items": "overwrite"}}
    old = [*items(1, 10, "old"), *items(20, 22, "old")]
    first = run_target(config(pg_db, **overwrite), messages(ITEMS, *old), tmp_path / "old")
    assert first.returncode == 0, first.stderr
    old_rows = items_final(pg_db)
    assert old_rows == [(i, f"old {i}") for i in [*range(1, 11), 20, 21, 22]]

    admin = pg_db.admin()
    with live_run(config(pg_db, **overwrite), tmp_path / "crash") as live:
        live.send(ITEMS, *items(1, 15, "new", state_every=5, version=7))
        live.wait_for_state({"pos": 10})
        # A reader holds the final table: the swap's TRUNCATE has to wait for it.
        admin.execute("BEGIN")
        admin.execute("SELECT count(*) FROM tap_data.items")
        try:
            assert live.process.stdin is not None
            live.process.stdin.close()  # end of input: the load ends with the swap
            wait_for_loader_query(pg_db, live, BLOCKED_TRUNCATE)
            returncode, states = stop(live)
        finally:
            admin.execute("ROLLBACK")
    assert returncode == -signal.SIGKILL
    wait_for_no_loader(pg_db.admin(), pg_db.role.name)
    assert items_final(pg_db) == old_rows, "a killed full refresh changed the live table"
    resume = states[-1]["pos"]

    rerun = run_target(
        config(pg_db, **overwrite),
        messages(ITEMS, *items(resume + 1, 15, "new", state_every=5, version=7)),
        tmp_path / "rerun",
    )
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.stdout.splitlines()[-1] == '{"pos": 15}'
    assert items_final(pg_db) == [(i, f"new {i}") for i in range(1, 16)]
    leftovers = admin.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'tap_data'"
    ).fetchall()
    assert leftovers == [("items",)]
    # Raw: the rows of this load only (the killed run's and the re-delivered ones).
    raw = admin.execute(
        "SELECT _airbyte_data->>'v' FROM airbyte_internal.tap_data_raw__stream_items"
    ).fetchall()
    assert sorted(value for (value,) in raw) == sorted(
        [f"new {i}" for i in range(1, 16)] + [f"new {i}" for i in range(resume + 1, 16)]
    )
