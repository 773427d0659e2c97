"""One batch into the database: a COPY into the raw table and one into the final table (or its
staging table, for an upsert), in the caller's transaction."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import psycopg
from psycopg.sql import Composed

from target_postgres_hp import sql
from target_postgres_hp.naming import derived_name


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
        """The session-private table an upsert stages rows in."""
        return derived_name(self.table, "stage")


@dataclass
class Batch:
    """The rows of one batch: raw rows, and the typed rows of the same records."""

    raw_rows: list[tuple[Any, ...]] = field(default_factory=list)
    final_rows: list[list[Any]] = field(default_factory=list)
    loaded_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))


def _copy(conn: psycopg.Connection[tuple[Any, ...]], statement: Composed, rows: list[Any]) -> None:
    with conn.cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)


def latest_per_key(rows: list[list[Any]], key_positions: list[int]) -> list[list[Any]]:
    """One row per key, the one that arrived last (rows of one stream arrive in extraction
    order, so the last also has the latest `_airbyte_extracted_at`)."""
    if len(key_positions) == 1:
        position = key_positions[0]
        return list({row[position]: row for row in rows}.values())
    return list({tuple(row[p] for p in key_positions): row for row in rows}.values())


def write_batch(
    conn: psycopg.Connection[tuple[Any, ...]],
    raw_schema: str,
    raw_table: str,
    final: FinalTarget | None,
    batch: Batch,
) -> None:
    """Write `batch` within the open transaction of `conn` (the caller commits)."""
    _copy(conn, sql.copy_into(raw_schema, raw_table, sql.RAW_COPY_COLUMNS), batch.raw_rows)
    if final is None or not batch.final_rows:
        return
    columns = final.all_columns
    if not final.keys:
        _copy(conn, sql.copy_into(final.schema, final.table, columns), batch.final_rows)
        return
    rows = latest_per_key(batch.final_rows, final.key_positions)
    if not final.upsert_needed:
        # A table that holds none of the batch's keys takes the batch as a plain COPY; the
        # unique index tells when that is not so, and the batch is upserted instead.
        try:
            with conn.transaction():
                _copy(conn, sql.copy_into(final.schema, final.table, columns), rows)
        except psycopg.errors.UniqueViolation:
            final.upsert_needed = True
        else:
            return
    conn.execute(sql.create_staging_table(final.staging, final.schema, final.table))
    _copy(conn, sql.copy_into("pg_temp", final.staging, columns), rows)
    conn.execute(
        sql.upsert_from_staging(
            final.staging, final.schema, final.table, columns, final.keys, cursor=None
        )
    )
