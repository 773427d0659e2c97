"""One stream's batches into the database.

Each batch streams its rows while they are decoded: raw rows through a COPY into the raw table,
typed rows through a COPY into the final table, on two connections so the server parses both at
once while the client decodes the next line (on a two-core machine this is what reaches the
limit of the layout). At the end of the batch the final transaction commits first, then the raw
one; a crash between the two leaves typed rows whose state was never emitted, which the next
run re-delivers (an upsert replaces them; an append stream may hold them twice).

A dedup stream's COPY goes into the final table inside a savepoint: the unique index on the key
proves no row of the batch meets an existing row or another row of the batch. If it does, the
savepoint is rolled back and the batch, reduced to its last row per key, is staged and upserted.
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
    table: str
    #: Property columns in table order; every row ends with the `_airbyte_` columns.
    columns: list[str]
    #: Key columns of an append-dedup stream; empty for append.
    keys: list[str] = field(default_factory=list)
    key_positions: list[int] = field(default_factory=list)
    #: Set once a batch met rows already in the table, so later batches upsert directly.
    upsert_needed: bool = False

    @property
    def all_columns(self) -> list[str]:
        """Every column a final row fills, in row order."""
        return [*self.columns, *sql.FINAL_META_COLUMNS]

    @property
    def staging(self) -> str:
        """The transaction-private table an upsert stages rows in."""
        return derived_name(self.table, "stage")


def latest_per_key(
    rows: list[list[Any]], key_positions: list[int], extracted_at_position: int
) -> list[list[Any]]:
    """One row per key: the latest `_airbyte_extracted_at`, then the latest arrival (SPEC §6.3).

    Extraction times are fixed-width UTC ISO texts, so comparing the texts compares times.
    """
    winners: dict[Any, list[Any]] = {}
    single = key_positions[0] if len(key_positions) == 1 else None
    for row in rows:
        key = row[single] if single is not None else tuple(row[p] for p in key_positions)
        current = winners.get(key)
        if current is None or row[extracted_at_position] >= current[extracted_at_position]:
            winners[key] = row
    return list(winners.values())


def _copy_rows(conn: PgConnection, statement: Composed, rows: list[Any]) -> None:
    with conn.cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)


def upsert(conn: PgConnection, final: FinalTarget, rows: list[list[Any]]) -> None:
    """Stage `rows` and merge them into the final table by key (SPEC §6.3)."""
    columns = final.all_columns
    conn.execute(sql.create_staging_table(final.staging, final.schema, final.table))
    _copy_rows(conn, sql.copy_into("pg_temp", final.staging, columns), rows)
    conn.execute(
        sql.upsert_from_staging(
            final.staging, final.schema, final.table, columns, final.keys, cursor=None
        )
    )


class BatchWriter:
    """Streams the rows of one sink's current batch and commits them."""

    def __init__(
        self,
        raw_conn: PgConnection,
        final_conn: PgConnection,
        raw_schema: str,
        raw_table: str,
        final: FinalTarget | None,
    ) -> None:
        self.raw_conn = raw_conn
        self.final_conn = final_conn
        self.raw_statement = sql.copy_into(raw_schema, raw_table, sql.RAW_COPY_COLUMNS)
        self.final = final
        self.loaded_at = datetime.now(timezone.utc).isoformat() if final is not None else None
        self._raw_stack = ExitStack()
        self._final_stack = ExitStack()
        self._raw_copy: psycopg.Copy | None = None
        self._final_copy: psycopg.Copy | None = None
        #: Typed rows kept for the upsert a dedup batch may need.
        self._kept: list[list[Any]] | None = None

    def _open(self) -> None:
        raw_cursor = self._raw_stack.enter_context(self.raw_conn.cursor())
        self._raw_copy = self._raw_stack.enter_context(raw_cursor.copy(self.raw_statement))
        final, conn = self.final, self.final_conn
        if final is None:
            return
        if final.keys:
            self._kept = []
            if final.upsert_needed:
                return
            conn.execute(sql.SAVEPOINT)
        final_cursor = self._final_stack.enter_context(conn.cursor())
        self._final_copy = self._final_stack.enter_context(
            final_cursor.copy(sql.copy_into(final.schema, final.table, final.all_columns))
        )

    def add(self, raw_row: tuple[Any, ...], final_row: list[Any] | None) -> None:
        """Send one record's rows."""
        if self._raw_copy is None:
            self._open()
        assert self._raw_copy is not None
        self._raw_copy.write_row(raw_row)
        if final_row is not None:
            if self._final_copy is not None:
                self._final_copy.write_row(final_row)
            if self._kept is not None:
                self._kept.append(final_row)

    def commit(self) -> None:
        """Finish both COPYs, upsert if the batch met existing keys, commit final then raw."""
        final, conn = self.final, self.final_conn
        self._raw_stack.close()
        try:
            self._final_stack.close()
        except psycopg.errors.UniqueViolation:
            if final is None:
                raise
            final.upsert_needed = True
            conn.execute(sql.ROLLBACK_TO_SAVEPOINT)
        if final is not None and self._kept is not None:
            if final.upsert_needed:
                winners = latest_per_key(self._kept, final.key_positions, len(final.columns) + 1)
                upsert(conn, final, winners)
            else:
                conn.execute(sql.RELEASE_SAVEPOINT)
        conn.commit()
        self.raw_conn.commit()

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
