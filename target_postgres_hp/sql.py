"""All SQL text of the target, composed with psycopg.sql so no name or value can inject SQL."""

from __future__ import annotations

from collections.abc import Sequence

from psycopg import sql

RAW_COLUMNS = (
    "_airbyte_raw_id",
    "_airbyte_extracted_at",
    "_airbyte_loaded_at",
    "_airbyte_data",
    "_airbyte_meta",
    "_airbyte_generation_id",
)

#: The columns a COPY into a raw table fills; `_airbyte_loaded_at` stays NULL until typing.
RAW_COPY_COLUMNS = (
    "_airbyte_raw_id",
    "_airbyte_extracted_at",
    "_airbyte_data",
    "_airbyte_meta",
    "_airbyte_generation_id",
)


def session_setup(search_path: Sequence[str]) -> sql.Composed:
    """UTC, ISO dates and the configured schemas, for every connection."""
    return sql.SQL("SET TIME ZONE 'UTC'; SET DateStyle TO ISO, MDY; SET search_path TO {}").format(
        sql.SQL(", ").join(sql.Identifier(name) for name in search_path)
    )


def create_schema(schema: str) -> sql.Composed:
    """Create a schema unless it exists."""
    return sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema))


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


def copy_raw(schema: str, table: str) -> sql.Composed:
    """COPY rows into a raw table."""
    return sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(schema, table),
        sql.SQL(", ").join(sql.Identifier(column) for column in RAW_COPY_COLUMNS),
    )


SCHEMA_PRIVILEGES = sql.SQL(
    "SELECT n.oid IS NOT NULL,"
    " coalesce(has_schema_privilege(n.oid, 'CREATE'), false),"
    " coalesce(has_schema_privilege(n.oid, 'USAGE'), false),"
    " has_database_privilege(current_database(), 'CREATE'),"
    " has_database_privilege(current_database(), 'TEMPORARY'),"
    " current_user, current_database()"
    " FROM (SELECT %s::text AS name) AS wanted"
    " LEFT JOIN pg_namespace AS n ON n.nspname = wanted.name"
)
