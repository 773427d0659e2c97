"""Raw tables: their shape, and paging their untyped rows into the final table."""

from __future__ import annotations

from psycopg import sql

#: The columns a COPY into a raw table fills; `_airbyte_loaded_at` is NULL until typed.
RAW_COPY_COLUMNS = (
    "_airbyte_raw_id",
    "_airbyte_extracted_at",
    "_airbyte_loaded_at",
    "_airbyte_data",
    "_airbyte_meta",
    "_airbyte_generation_id",
)


def create_raw_table(schema: str, table: str, primary_key: str, untyped_index: str) -> sql.Composed:
    """The raw table: the primary key, plus one partial index that finds untyped rows."""
    return sql.SQL(
        "CREATE TABLE IF NOT EXISTS {table} ("
        " _airbyte_raw_id VARCHAR CONSTRAINT {primary_key} PRIMARY KEY,"
        " _airbyte_extracted_at TIMESTAMP WITH TIME ZONE NOT NULL,"
        " _airbyte_loaded_at TIMESTAMP WITH TIME ZONE,"
        " _airbyte_data JSONB NOT NULL,"
        " _airbyte_meta JSONB NOT NULL,"
        " _airbyte_generation_id BIGINT NOT NULL DEFAULT 0"
        "); "
        "CREATE INDEX IF NOT EXISTS {index} ON {table} (_airbyte_extracted_at)"
        " WHERE _airbyte_loaded_at IS NULL"
    ).format(
        table=sql.Identifier(schema, table),
        primary_key=sql.Identifier(primary_key),
        index=sql.Identifier(untyped_index),
    )


def untyped_raw_rows(schema: str, table: str) -> sql.Composed:
    """The next raw rows not yet typed into the final table, oldest first: after the raw id
    `%s` (keyset paging), at most `%s` of them."""
    return sql.SQL(
        "SELECT _airbyte_raw_id, _airbyte_extracted_at, _airbyte_data::text,"
        " _airbyte_meta::text, _airbyte_generation_id FROM {}"
        " WHERE _airbyte_loaded_at IS NULL AND _airbyte_raw_id > %s"
        " ORDER BY _airbyte_raw_id LIMIT %s"
    ).format(sql.Identifier(schema, table))


def mark_typed(schema: str, table: str) -> sql.Composed:
    """Record that raw rows (`%s`, an id array) are now in the final table."""
    return sql.SQL(
        "UPDATE {} SET _airbyte_loaded_at = now() WHERE _airbyte_raw_id = ANY(%s)"
    ).format(sql.Identifier(schema, table))


def has_untyped(schema: str, table: str) -> sql.Composed:
    """One row if a raw table holds a row not yet typed (through its partial index)."""
    return sql.SQL("SELECT 1 FROM {} WHERE _airbyte_loaded_at IS NULL LIMIT 1").format(
        sql.Identifier(schema, table)
    )
