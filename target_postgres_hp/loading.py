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

from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import psycopg
from psycopg import Connection
from psycopg.sql import Composed

from target_postgres_hp import sql
from target_postgres_hp.naming import derived_name

PgConnection = Connection[tuple[Any, ...]]


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


def upsert(conn: PgConnection, final: FinalTarget, rows: list[list[Any]], *, deletes: bool) -> None:
    """Stage a batch and merge its winner per key into the table (SPEC §6.3).

    With hard deletes in play (`deletes`: the batch holds a delete; or keys were removed
    before), winners beaten by a recorded delete are dropped first, winning deletes remove
    their row, and the deletes are recorded.
    """
    columns, keys, cursor = final.all_columns, final.keys, final.cursor
    _session_table(
        conn, final.staging, sql.create_staging_table(final.staging, final.schema, final.table)
    )
    _copy_rows(conn, sql.copy_into("pg_temp", final.staging, columns), rows)
    if not (final.deleted and (deletes or final.has_tombstones)):
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
    removed = [
        ctid
        for (ctid,) in conn.execute(
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
    ]
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


class BatchWriter:
    """Streams the rows of one sink's current batch and commits them.

    The batch's rows are also kept, so that a batch whose connection was lost can be sent again
    on new connections (`replay`) from the last committed batch on (SPEC §9).
    """

    def __init__(
        self,
        raw_conn: PgConnection,
        final_conn: PgConnection,
        raw: tuple[str, str] | None,
        final: FinalTarget | None,
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
        #: The batch's rows, for an upsert or a replay.
        self.raw_rows: list[tuple[Any, ...]] = []
        self.final_rows: list[list[Any]] = []
        #: Whether the batch holds a record that deletes its key (hard_delete).
        self.saw_delete = False
        #: The error that cut a connection while rows streamed; the commit raises it.
        self.lost: psycopg.OperationalError | None = None
        #: Set once the final table's transaction is committed (the raw one follows).
        self.final_committed = False
        self._opened = False

    @property
    def records(self) -> int:
        """How many records the batch holds."""
        return max(len(self.raw_rows), len(self.final_rows))

    @property
    def connection_lost(self) -> bool:
        """Whether one of the batch's connections is gone."""
        return any(conn.closed or conn.broken for conn in (self.raw_conn, self.final_conn))

    def _open(self) -> None:
        self._opened = True
        if self.raw_statement is not None:
            raw_cursor = self._raw_stack.enter_context(self.raw_conn.cursor())
            self._raw_copy = self._raw_stack.enter_context(raw_cursor.copy(self.raw_statement))
        final, conn = self.final, self.final_conn
        if final is None:
            return
        if final.keys:
            if not final.copy_directly:
                return
            conn.execute(sql.SAVEPOINT)
        final_cursor = self._final_stack.enter_context(conn.cursor())
        self._final_copy = self._final_stack.enter_context(
            final_cursor.copy(sql.copy_into(final.schema, final.table, final.all_columns))
        )

    def add(self, raw_row: tuple[Any, ...] | None, final_row: list[Any] | None) -> None:
        """Send one record's rows (and keep them): its raw row unless the layout has no raw
        table, its final row unless it has no final table. A lost connection is remembered
        for the commit, which raises it."""
        if raw_row is not None:
            self.raw_rows.append(raw_row)
        if final_row is not None:
            self.final_rows.append(final_row)
        if self.lost is not None:
            return
        try:
            if not self._opened:
                self._open()
            if raw_row is not None and self._raw_copy is not None:
                self._raw_copy.write_row(raw_row)
            if final_row is not None and self._final_copy is not None:
                self._final_copy.write_row(final_row)
        except psycopg.OperationalError as error:
            if not self.connection_lost:
                raise
            self.lost = error

    def commit(self) -> None:
        """Finish both COPYs, upsert if the batch met existing keys (or holds deletes), commit
        final then raw."""
        if self.lost is not None:
            raise self.lost
        if not self._opened:
            self._open()
        final, conn = self.final, self.final_conn
        self._raw_stack.close()
        copied = self._final_copy is not None
        try:
            self._final_stack.close()
        except psycopg.errors.UniqueViolation:
            if final is None:
                raise
            final.upsert_needed = True
            conn.execute(sql.ROLLBACK_TO_SAVEPOINT)
            copied = False
        if final is not None and final.keys:
            if copied and self.saw_delete:
                # Deletes never go in as rows: take the batch through the upsert.
                conn.execute(sql.ROLLBACK_TO_SAVEPOINT)
                copied = False
            if copied:
                conn.execute(sql.RELEASE_SAVEPOINT)
            else:
                upsert(conn, final, self.final_rows, deletes=self.saw_delete)
        conn.commit()
        self.final_committed = True
        self.raw_conn.commit()

    def replay(self, raw_conn: PgConnection, final_conn: PgConnection) -> BatchWriter:
        """The same batch on new connections, for a retry; the final table's part is left out
        when it was already committed."""
        final = None if self.final_committed else self.final
        writer = BatchWriter(raw_conn, final_conn, self.raw, final)
        writer.saw_delete = self.saw_delete
        raw_rows = self.raw_rows if self.raw is not None else []
        final_rows = self.final_rows if final is not None else []
        for index in range(max(len(raw_rows), len(final_rows))):
            writer.add(
                raw_rows[index] if raw_rows else None, final_rows[index] if final_rows else None
            )
        return writer

    def abort(self) -> None:
        """Give up the batch: both transactions roll back."""
        for stack in (self._raw_stack, self._final_stack):
            with suppress(psycopg.Error):
                stack.close()
        for conn in (self.final_conn, self.raw_conn):
            if not conn.closed:
                try:
                    conn.rollback()
                except psycopg.Error:
                    conn.close()
