"""The batch writer (`loading.BatchWriter`) on a real server: the commit order that SPEC §9's
guarantees rest on, the replay of a batch after a lost connection, and the dedup batch that
falls back from a plain COPY to an upsert when it meets an existing key."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from target_postgres_hp import sql
from target_postgres_hp.config import Settings
from target_postgres_hp.connector import PostgresConnector
from target_postgres_hp.loading import BatchWriter, FinalTarget, KeptData, PgConnection
from tests.servers import PgDatabase

SCHEMA = "w"


@pytest.fixture
def connector(pg_db: PgDatabase) -> Iterator[PostgresConnector]:
    """The target's connector on a fresh database, with a raw and a final table made the way
    the target makes them."""
    connector = PostgresConnector(Settings.from_config(pg_db.config(schema=SCHEMA)))
    connector.preflight()
    connector.prepare_schema(SCHEMA)
    with connector.raw_connection() as conn:
        conn.execute(sql.create_raw_table(SCHEMA, "raw", "raw_pkey", "raw_untyped"))
        conn.execute(sql.create_final_table(SCHEMA, "final", [("id", "BIGINT"), ("v", "VARCHAR")]))
    try:
        yield connector
    finally:
        connector.dispose()


def final_target(*, keys: list[str] | None = None) -> FinalTarget:
    return FinalTarget(schema=SCHEMA, table="final", columns=["id", "v"], keys=keys or [])


def rows(first: int, count: int, value: str = "a") -> list[tuple[tuple[Any, ...], list[Any]]]:
    """(raw row, final row) pairs of records first .. first + count - 1."""
    made = []
    for n in range(first, first + count):
        raw_id = f"{value}{n:019d}"
        at = "2026-01-01T00:00:00+00:00"
        meta = '{"changes": []}'
        made.append(
            (
                (raw_id, at, None, f'{{"id": {n}, "v": "{value}"}}', meta, 0),
                [n, value, raw_id, at, meta, 0],
            )
        )
    return made


def table_rows(connector: PostgresConnector, table: str) -> list[tuple[Any, ...]]:
    column = "_airbyte_raw_id" if table == "raw" else "id, v"
    query = psycopg.sql.SQL("SELECT {} FROM {} ORDER BY 1").format(
        psycopg.sql.SQL(column), psycopg.sql.Identifier(SCHEMA, table)
    )
    with connector.raw_connection() as conn:
        return conn.execute(query).fetchall()


def kill(conn: PgConnection, admin: psycopg.Connection[Any]) -> None:
    """Terminate the connection's server process, and wait until it is gone."""
    pid = conn.info.backend_pid
    admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    deadline = time.monotonic() + 10
    while admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
        assert time.monotonic() < deadline, "the killed backend did not go away"
        time.sleep(0.01)


def test_the_final_table_commits_before_the_raw_table(
    connector: PostgresConnector, pg_db: PgDatabase
) -> None:
    """A failure between the two commits leaves typed rows whose raw rows are missing, never
    the reverse (the batch's state is emitted only after both). A deferred constraint trigger
    on the raw table makes the raw commit itself fail, after the final one. The replay then
    sends only the raw part."""
    admin = pg_db.admin()
    admin.execute(
        "CREATE FUNCTION w.refuse() RETURNS trigger LANGUAGE plpgsql AS"
        " $$BEGIN RAISE EXCEPTION 'raw commit refused'; END$$"
    )
    admin.execute(
        "CREATE CONSTRAINT TRIGGER refuse AFTER INSERT ON w.raw DEFERRABLE INITIALLY DEFERRED"
        " FOR EACH ROW EXECUTE FUNCTION w.refuse()"
    )
    pair = connector.streaming.acquire()
    assert pair is not None
    writer = BatchWriter(*pair, (SCHEMA, "raw"), final_target())
    for raw_row, final_row in rows(1, 3):
        writer.add(raw_row, final_row)
    with pytest.raises(psycopg.errors.RaiseException, match="raw commit refused"):
        writer.commit()
    assert writer.final_committed
    assert table_rows(connector, "final") == [(1, "a"), (2, "a"), (3, "a")]
    assert table_rows(connector, "raw") == []
    writer.abort()
    connector.streaming.release(pair)

    admin.execute("DROP TRIGGER refuse ON w.raw")
    again = connector.streaming.acquire()
    assert again is not None
    writer.replay(*again).commit()
    connector.streaming.release(again)
    assert table_rows(connector, "final") == [(1, "a"), (2, "a"), (3, "a")]
    assert [row[0] for row in table_rows(connector, "raw")] == [f"a{n:019d}" for n in (1, 2, 3)]


def test_a_batch_lost_before_any_commit_is_replayed_whole(
    connector: PostgresConnector, pg_db: PgDatabase
) -> None:
    pair = connector.streaming.acquire()
    assert pair is not None
    writer = BatchWriter(*pair, (SCHEMA, "raw"), final_target())
    kill(pair[1], pg_db.admin())  # the final connection, while rows stream
    for raw_row, final_row in rows(1, 2):
        writer.add(raw_row, final_row)
    with pytest.raises(psycopg.OperationalError):
        writer.commit()
    assert not writer.final_committed
    writer.abort()
    connector.streaming.release(pair)
    assert table_rows(connector, "final") == []
    assert table_rows(connector, "raw") == []

    again = connector.streaming.acquire()
    assert again is not None
    writer.replay(*again).commit()
    connector.streaming.release(again)
    assert table_rows(connector, "final") == [(1, "a"), (2, "a")]
    assert len(table_rows(connector, "raw")) == 2


def test_a_dedup_batch_meeting_an_existing_key_is_upserted(connector: PostgresConnector) -> None:
    """The first batch of a dedup stream tries a plain COPY under a savepoint; one that meets
    a key already in the table rolls back to it and merges instead, and the batches after it
    merge directly."""
    connector.prepare_key_index(SCHEMA, "final", ["id"], None)
    final = final_target(keys=["id"])
    for batch, value in ((rows(1, 2), "a"), (rows(2, 2, "b"), "b"), (rows(3, 1, "c"), "c")):
        pair = connector.streaming.acquire()
        assert pair is not None
        writer = BatchWriter(*pair, (SCHEMA, "raw"), final)
        for raw_row, final_row in batch:
            writer.add(raw_row, final_row)
        writer.commit()
        connector.streaming.release(pair)
        assert final.upsert_needed == (value != "a")
    assert table_rows(connector, "final") == [(1, "a"), (2, "b"), (3, "c")]
    assert len(table_rows(connector, "raw")) == 5


@pytest.mark.parametrize("keys", [None, ["id"]], ids=["append", "dedup-staged"])
@pytest.mark.parametrize("lost", ["raw", "final"])
def test_a_batch_lost_while_its_rows_stream_is_replayed_exactly_once(
    connector: PostgresConnector, pg_db: PgDatabase, keys: list[str] | None, lost: str
) -> None:
    """The writer keeps the COPY data it sent, not the rows: a connection killed after some
    blocks went out (and more rows sit in the COPY's buffer) loses none of them and sends
    none twice when the batch is replayed; nor do the rows added after the loss. A dedup
    batch that streams into the staging table (an earlier batch met existing keys) merges
    all of them after the replay."""
    final = final_target(keys=keys)
    if keys:
        connector.prepare_key_index(SCHEMA, "final", keys, None)
        final.upsert_needed = True
    pair = connector.streaming.acquire()
    assert pair is not None
    writer = BatchWriter(*pair, (SCHEMA, "raw"), final)
    # Rows stream until the loss shows, then 500 more, which no COPY takes. When it shows
    # depends on libpq and the machine: since PostgreSQL 12 libpq discards what it cannot
    # send and reports the loss when it next reads, which may be only at the COPY's end.
    batch = rows(1, 20_000)
    count = after_loss = 0
    for count, (raw_row, final_row) in enumerate(batch, start=1):
        if count == 1500:
            kill(pair[0] if lost == "raw" else pair[1], pg_db.admin())
        writer.add(raw_row, final_row)
        after_loss += writer.lost is not None
        if after_loss > 500:
            break
    assert writer.staged == bool(keys)
    assert writer.raw_data
    assert writer.final_data
    if writer.lost is not None:
        # The loss showed while rows streamed: some went out as COPY data, the rest were kept.
        assert writer.final_rows if lost == "final" else writer.raw_rows
    with pytest.raises(psycopg.OperationalError):
        writer.commit()
    writer.abort()
    connector.streaming.release(pair)
    assert table_rows(connector, "final") == []
    again = connector.streaming.acquire()
    assert again is not None
    writer.replay(*again).commit()
    connector.streaming.release(again)
    assert table_rows(connector, "final") == [(n, "a") for n in range(1, count + 1)]
    assert [row[0] for row in table_rows(connector, "raw")] == [
        f"a{n:019d}" for n in range(1, count + 1)
    ]


def test_a_batch_reusing_the_buffers_of_the_one_before_replays_only_its_own_data(
    connector: PostgresConnector, pg_db: PgDatabase
) -> None:
    """A stream's batches keep their COPY data in the same buffers (`KeptData`), one batch
    after another: a batch lost after a larger one was committed replays its own rows only,
    none of the earlier batch's left in the buffers; and its replay (in new buffers) loads
    each row once."""
    kept = (KeptData(), KeptData())
    pair = connector.streaming.acquire()
    assert pair is not None
    first = BatchWriter(*pair, (SCHEMA, "raw"), final_target(), kept)
    for raw_row, final_row in rows(1, 6000, "a"):
        first.add(raw_row, final_row)
    first.commit()
    used = len(kept[1])
    second = BatchWriter(*pair, (SCHEMA, "raw"), final_target(), kept)
    assert second.final_data is kept[1]
    for number, (raw_row, final_row) in enumerate(rows(10_001, 3000, "b"), start=1):
        if number == 2000:
            kill(pair[1], pg_db.admin())
        second.add(raw_row, final_row)
    assert 0 < len(kept[1]) < used  # reused, and holding the second batch's data only
    with pytest.raises(psycopg.OperationalError):
        second.commit()
    second.abort()
    connector.streaming.release(pair)
    again = connector.streaming.acquire()
    assert again is not None
    replayed = second.replay(*again)
    assert replayed.final_data is not kept[1]
    replayed.commit()
    connector.streaming.release(again)
    assert table_rows(connector, "final") == [
        *((n, "a") for n in range(1, 6001)),
        *((n, "b") for n in range(10_001, 13_001)),
    ]
    assert len(table_rows(connector, "raw")) == 9000
