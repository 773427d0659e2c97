"""One stream's batches into the database.

Each batch streams its rows while they are decoded: raw rows through a COPY into the raw table,
typed rows through a COPY into the final table, on two connections so the server parses both at
once while the client decodes the next line (on a two-core machine this is what reaches the
limit of the layout). At the end of the batch the final transaction commits first, then the raw
one; a crash between the two leaves typed rows whose state was never emitted, which the next
run re-delivers (an upsert replaces them; an append stream may hold them twice).

A dedup stream's COPY goes into the final table inside a savepoint: the unique index on the key
proves no row of the batch meets an existing row or another row of the batch. If it does (or
the batch holds a delete), the savepoint is rolled back and the batch is staged, reduced to its
winner per key in SQL (cursor, then extraction time, then arrival: SPEC §6.3) and upserted
through the key index, so the cost follows the batch, not the table.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import psycopg
from psycopg import Connection
from psycopg.abc import Buffer
from psycopg.copy import LibpqWriter
from psycopg.sql import Composed

from target_postgres_hp import sql
from target_postgres_hp.naming import derived_name

PgConnection = Connection[tuple[Any, ...]]

#: SQLSTATE classes of the database refusing what a batch holds, as opposed to the batch's
#: connection or transaction failing: data exceptions (22: a value out of range), integrity
#: constraints (23) and program limits (54: a row or an index entry too big).
REFUSING_CLASSES = frozenset({"22", "23", "54"})


def refuses_data(error: BaseException) -> bool:
    """Whether the database refused `error`'s statement for the data it was given (SPEC §9):
    sending the same data again would fail the same way."""
    return isinstance(error, psycopg.Error) and (error.sqlstate or "")[:2] in REFUSING_CLASSES


@dataclass
class FinalTarget:
    """Where a sink's typed rows go, and how."""

    schema: str
    #: The table written: the final table, or a full refresh's side table.
    table: str
    #: Property columns in table order; every row ends with the `_airbyte_` columns.
    columns: list[str]
    #: Key columns of a deduplicated stream; empty for append.
    keys: list[str] = field(default_factory=list)
    #: Their types, on servers whose key index cannot say NULLS NOT DISTINCT (before 15).
    key_types: list[str] | None = None
    #: The cursor column (first bookmark property), which decides between rows of a key.
    cursor: str | None = None
    #: Deletion markers (column, property), when a marked record removes its key
    #: (hard_delete).
    deleted: list[tuple[str, str]] = field(default_factory=list)
    #: Where removed keys are remembered (schema, table), so older records stay out.
    tombstones: tuple[str, str] | None = None
    #: Whether the stream has removed keys on record.
    has_tombstones: bool = False
    #: Set once a batch met rows already in the table, so later batches upsert directly.
    upsert_needed: bool = False
    #: Columns of the table that no property of the current schema fills (a property removed
    #: from the schema): a winning record sets them NULL (SPEC §6.3, §7).
    vacated: list[str] = field(default_factory=list)
    #: A short digest of the table's columns and types when the plan was made: the helper
    #: tables of an upsert are named after it, so a session reuses them until the shape changes.
    shape: str = ""

    @property
    def all_columns(self) -> list[str]:
        """Every column a final row fills, in row order."""
        return [*self.columns, *sql.FINAL_META_COLUMNS]

    @property
    def conflict(self) -> Composed:
        """The key index's terms: the ON CONFLICT target of an upsert."""
        return sql.key_terms(self.keys, self.key_types)

    @property
    def staging(self) -> str:
        """The session's table an upsert stages rows in (emptied at each commit)."""
        return derived_name(self.table, f"stage{self.shape}")

    @property
    def winners(self) -> str:
        """The session's table a batch's winner per key goes to (emptied at each commit)."""
        return derived_name(self.table, f"winners{self.shape}")

    @property
    def copy_directly(self) -> bool:
        """Whether a batch may try the plain COPY: no earlier batch met existing keys and no
        removed key has to be checked."""
        return not (self.upsert_needed or self.has_tombstones)


def _copy_rows(conn: PgConnection, statement: Composed, rows: list[Any]) -> None:
    with conn.cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)


def _session_table(conn: PgConnection, name: str, create: Composed) -> None:
    """Create a temporary table of the session unless an earlier batch on the same connection
    did: one per table shape and session, not one per batch, so long runs do not fill the
    catalog with the dead rows of dropped temporary tables."""
    found = conn.execute(sql.TEMP_TABLE, (name,)).fetchone()
    if found is None or found[0] is None:
        conn.execute(create)


def prepare_staging(conn: PgConnection, final: FinalTarget) -> Composed:
    """The session's staging table of `final` (created on the connection's first batch of this
    table shape), and the COPY statement that fills it."""
    _session_table(
        conn, final.staging, sql.create_staging_table(final.staging, final.schema, final.table)
    )
    return sql.copy_into("pg_temp", final.staging, final.all_columns)


def upsert(conn: PgConnection, final: FinalTarget, rows: list[list[Any]], *, deletes: bool) -> None:
    """Stage rows and merge their winner per key into the table (`merge_staged`)."""
    _copy_rows(conn, prepare_staging(conn, final), rows)
    merge_staged(conn, final, deletes=deletes)


def merge_staged(conn: PgConnection, final: FinalTarget, *, deletes: bool) -> None:
    """Merge the winner per key of the staged batch into the table (SPEC §6.3).

    With hard deletes in play (`deletes`: the batch holds a delete; or keys were removed
    before, by this run or an earlier hard_delete one, whatever `cdc_deletion_mode` is now),
    winners beaten by a recorded delete are dropped first, winning deletes remove their row,
    and the deletes are recorded.
    """
    columns, keys, cursor = final.all_columns, final.keys, final.cursor
    if not (final.has_tombstones or (final.deleted and deletes)):
        conn.execute(
            sql.upsert_rows(
                sql.distinct_winners(final.staging, keys, cursor),
                final.schema,
                final.table,
                columns,
                final.conflict,
                cursor,
                vacated=final.vacated,
            )
        )
        return
    winners = final.winners
    _session_table(conn, winners, sql.create_winners_table(winners, final.staging))
    conn.execute(sql.fill_winners_table(winners, final.staging, keys, cursor))
    if final.has_tombstones and final.tombstones is not None:
        for statement in sql.discard_beaten_by_tombstones(winners, *final.tombstones, keys, cursor):
            conn.execute(statement)
    written = conn.execute(
        sql.upsert_rows(
            sql.temp_table(winners),
            final.schema,
            final.table,
            columns,
            final.conflict,
            cursor,
            deleted=final.deleted,
            vacated=final.vacated,
        )
    )
    # Under soft_delete (no marker columns) the upsert returns nothing: deletes stay rows.
    removed = [ctid for (ctid,) in written] if final.deleted else []
    if removed:
        conn.execute(sql.delete_by_ctid(final.schema, final.table), (removed,))
    if deletes and final.tombstones is not None:
        conn.execute(
            sql.upsert_rows(
                sql.winners_where(winners, final.deleted),
                *final.tombstones,
                columns,
                final.conflict,
                cursor,
            )
        )
        final.has_tombstones = True


def write_typed(
    conn: PgConnection, final: FinalTarget, rows: list[list[Any]], *, deletes: bool
) -> None:
    """Write typed rows in the current transaction: merged by key for a dedup stream,
    appended otherwise."""
    if final.keys:
        upsert(conn, final, rows, deletes=deletes)
    else:
        _copy_rows(conn, sql.copy_into(final.schema, final.table, final.all_columns), rows)


class KeptData:
    """The COPY data a batch sent to one table, in one buffer that a later batch reuses
    (`clear`; `streaming.StreamingPairs.buffers` hands them out). Kept as the blocks psycopg
    sends, a batch's data was freed at its commit and the memory went back to the system,
    which the next batch then took again a page at a time: 30,000 page faults per 200,000
    wide records, 0.15 s of system CPU."""

    #: The size of the copies `blocks` hands out.
    BLOCK = 1 << 20

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._size = 0

    def append(self, data: Buffer) -> None:
        """Keep a block after the ones kept before it."""
        end = self._size + len(data)
        self._buffer[self._size : end] = data
        self._size = end

    def clear(self) -> None:
        """Forget the data, keeping the buffer's memory for the next batch's."""
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def blocks(self, end: int | None = None) -> Iterator[bytes]:
        """The data (up to `end`), in copies of up to `BLOCK` bytes (the buffer stays free to
        grow)."""
        size = self._size if end is None else min(end, self._size)
        for start in range(0, size, self.BLOCK):
            yield bytes(self._buffer[start : min(start + self.BLOCK, size)])

    def row_ends(self) -> list[int]:
        """Where each row of the data ends: text COPY data ends every row with a newline, and a
        newline in a value is sent escaped."""
        ends: list[int] = []
        find, start, size = self._buffer.find, 0, self._size
        while (end := find(b"\n", start, size)) >= 0:
            start = end + 1
            ends.append(start)
        return ends


class _KeptCopy(LibpqWriter):
    """Sends a COPY's data and keeps every block of it (`kept`), so that the batch can be sent
    again on another connection, or staged for a merge, without formatting its rows again and
    without keeping each row's Python objects alive until the commit."""

    def __init__(self, cursor: psycopg.Cursor[Any], kept: KeptData) -> None:
        super().__init__(cursor)
        self.kept = kept

    def write(self, data: Buffer) -> None:
        """Keep a block, then send it (a lost connection raises after it is kept)."""
        self.kept.append(data)
        super().write(data)


class BatchWriter:
    """Streams the rows of one sink's current batch and commits them.

    Rows go out as they are added, as COPY data: into the raw table; into the final table
    (append, and a dedup stream's batches while no batch has met existing keys, under a
    savepoint); or into the session's staging table, from which a dedup batch is merged at
    the commit. The COPY data is kept (not the rows), so that a batch whose connection was
    lost can be sent again on new connections (`replay`) from the last committed batch on
    (SPEC §9), and a batch that met existing keys is staged from it.
    """

    def __init__(
        self,
        raw_conn: PgConnection,
        final_conn: PgConnection,
        raw: tuple[str, str] | None,
        final: FinalTarget | None,
        kept: tuple[KeptData, KeptData] | None = None,
    ) -> None:
        self.raw_conn = raw_conn
        self.final_conn = final_conn
        #: The raw table; None in the direct layout, whose batches write the final table only.
        self.raw = raw
        self.raw_statement = sql.copy_into(*raw, sql.RAW_COPY_COLUMNS) if raw else None
        self.final = final
        self.loaded_at = datetime.now(timezone.utc).isoformat() if final is not None else None
        self._raw_stack = ExitStack()
        self._final_stack = ExitStack()
        self._raw_copy: psycopg.Copy | None = None
        self._final_copy: psycopg.Copy | None = None
        #: The COPY data sent so far, per table: in the buffers of `kept` (those of a
        #: finished batch) or new ones.
        self.raw_data, self.final_data = kept or (KeptData(), KeptData())
        self.raw_data.clear()
        self.final_data.clear()
        #: Rows added once a connection was lost, which no COPY took (sent by `replay`).
        self.raw_rows: list[tuple[Any, ...]] = []
        self.final_rows: list[list[Any]] = []
        #: Whether the final rows stream into the session's staging table (to be merged).
        self.staged = False
        #: How many records the batch holds.
        self.records = 0
        #: Whether the batch holds a record that deletes its key (hard_delete).
        self.saw_delete = False
        #: The error that cut a connection while rows streamed; the commit raises it.
        self.lost: psycopg.OperationalError | None = None
        #: Set once the final table's transaction is committed (the raw one follows).
        self.final_committed = False
        #: The input line of each record (`first` takes the records before a line).
        self.lines: list[int] = []
        self._opened = False

    @property
    def connection_lost(self) -> bool:
        """Whether one of the batch's connections is gone."""
        return any(conn.closed or conn.broken for conn in (self.raw_conn, self.final_conn))

    def _open(self) -> None:
        self._opened = True
        if self.raw_statement is not None:
            self._raw_copy = self._start_copy(
                self._raw_stack, self.raw_conn, self.raw_statement, self.raw_data
            )
        final, conn = self.final, self.final_conn
        if final is None:
            return
        statement = sql.copy_into(final.schema, final.table, final.all_columns)
        if final.keys:
            if final.copy_directly:
                conn.execute(sql.SAVEPOINT)
            else:
                statement, self.staged = prepare_staging(conn, final), True
        self._final_copy = self._start_copy(self._final_stack, conn, statement, self.final_data)

    @staticmethod
    def _start_copy(
        stack: ExitStack, conn: PgConnection, statement: Composed, kept: KeptData
    ) -> psycopg.Copy:
        cursor = stack.enter_context(conn.cursor())
        return stack.enter_context(cursor.copy(statement, writer=_KeptCopy(cursor, kept)))

    def add(self, raw_row: tuple[Any, ...] | None, final_row: list[Any] | None) -> None:
        """Send one record's rows: its raw row unless the layout has no raw table, its final
        row unless it has no final table. A lost connection is remembered for the commit,
        which raises it; the rows from then on are kept for the replay."""
        self.records += 1
        #: Which of the record's rows a COPY took: none, raw, both. A row `write_row` takes
        #: is in the COPY data even if sending it raises.
        taken = 0
        if self.lost is None:
            try:
                if not self._opened:
                    self._open()
                taken = 1
                if raw_row is not None and self._raw_copy is not None:
                    self._raw_copy.write_row(raw_row)
                taken = 2
                if final_row is not None and self._final_copy is not None:
                    self._final_copy.write_row(final_row)
                return
            except psycopg.OperationalError as error:
                if not self.connection_lost:
                    raise
                self._lose(error)
        if taken == 0 and raw_row is not None and self.raw is not None:
            self.raw_rows.append(raw_row)
        if taken <= 1 and final_row is not None and self.final is not None:
            self.final_rows.append(final_row)

    def _lose(self, error: psycopg.OperationalError) -> None:
        """Remember a lost connection, and end both COPYs (`_end_copies`)."""
        self.lost = error
        self._end_copies()

    def _end_copies(self) -> None:
        """End both COPYs, whatever state their connections are in: the rows still buffered
        in a COPY go to the kept data (sending them fails, or goes to a transaction that
        `abort` rolls back)."""
        for stack in (self._raw_stack, self._final_stack):
            with suppress(psycopg.Error):
                stack.close()

    def commit(self) -> None:
        """Write the batch out (`write_out`), then commit the final table's transaction
        first and the raw one's after it (see the module's docstring)."""
        self.write_out()
        self.final_conn.commit()
        self.final_committed = True
        self.raw_conn.commit()

    def write_out(self) -> None:
        """Finish both COPYs and merge a dedup batch that was staged, met existing keys or
        holds deletes: every row is written and checked, the transactions are left to
        commit."""
        if self.lost is not None:
            raise self.lost
        if not self._opened:
            self._open()
        final, conn = self.final, self.final_conn
        self._raw_stack.close()
        copied = self._final_copy is not None and not self.staged
        try:
            self._final_stack.close()
        except psycopg.errors.UniqueViolation:
            if final is None or self.staged:
                raise
            final.upsert_needed = True
            conn.execute(sql.ROLLBACK_TO_SAVEPOINT)
            copied = False
        if final is None or not final.keys:
            return
        if copied and self.saw_delete:
            # Deletes never go in as rows: take the batch through the merge.
            conn.execute(sql.ROLLBACK_TO_SAVEPOINT)
            copied = False
        if copied:
            conn.execute(sql.RELEASE_SAVEPOINT)
            return
        if not self.staged:
            with conn.cursor() as cursor, cursor.copy(prepare_staging(conn, final)) as copy:
                for block in self.final_data.blocks():
                    copy.write(block)
        merge_staged(conn, final, deletes=self.saw_delete)

    def replay(self, raw_conn: PgConnection, final_conn: PgConnection) -> BatchWriter:
        """The same batch on new connections, for a retry; the final table's part is left out
        when it was already committed."""
        final = None if self.final_committed else self.final
        self._end_copies()
        writer = BatchWriter(raw_conn, final_conn, self.raw, final)
        writer.saw_delete = self.saw_delete
        writer.records = self.records
        writer.lines = self.lines
        writer._open()
        parts: list[tuple[psycopg.Copy | None, KeptData, Sequence[Sequence[Any]]]] = [
            (writer._raw_copy, self.raw_data, self.raw_rows)
        ]
        if final is not None:
            parts.append((writer._final_copy, self.final_data, self.final_rows))
        for copy, blocks, rows in parts:
            if copy is None:
                continue
            for block in blocks.blocks():
                copy.write(block)
            for row in rows:
                copy.write_row(row)
        return writer

    def first(self, count: int, raw_conn: PgConnection, final_conn: PgConnection) -> BatchWriter:
        """The batch's first `count` records alone, on new connections: to find the record the
        database refuses, and to commit those before it (SPEC §9). The batch's COPYs are
        ended first, so their data is whole."""
        self._end_copies()
        writer = BatchWriter(raw_conn, final_conn, self.raw, self.final)
        writer.saw_delete = self.saw_delete
        writer.records = count
        writer.lines = self.lines[:count]
        writer._open()
        parts: list[tuple[psycopg.Copy | None, KeptData, Sequence[Sequence[Any]]]] = [
            (writer._raw_copy, self.raw_data, self.raw_rows),
            (writer._final_copy, self.final_data, self.final_rows),
        ]
        for copy, data, rows in parts:
            if copy is None:
                continue
            # The rows a lost connection left out of the COPY data follow it (`add`).
            ends = data.row_ends()
            kept = min(count, len(ends))
            for block in data.blocks(ends[kept - 1] if kept else 0):
                copy.write(block)
            for row in rows[: count - kept]:
                copy.write_row(row)
        return writer

    def abort(self) -> None:
        """Give up the batch: both transactions roll back."""
        self._end_copies()
        for conn in (self.final_conn, self.raw_conn):
            if not conn.closed:
                try:
                    conn.rollback()
                except psycopg.Error:
                    conn.close()
