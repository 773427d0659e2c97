"""All SQL text of the target, composed with psycopg.sql so no name or value can inject SQL."""

from __future__ import annotations

from collections.abc import Sequence

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

#: The `_airbyte_` columns of a final table, after the property columns.
FINAL_META_COLUMNS = (
    "_airbyte_raw_id",
    "_airbyte_extracted_at",
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


def comment_on_table(schema: str, table: str, comment: str) -> sql.Composed:
    """Record which stream a table was made for."""
    return sql.SQL("COMMENT ON TABLE {} IS {}").format(
        sql.Identifier(schema, table), sql.Literal(comment)
    )


def comment_on_column(schema: str, table: str, column: str, comment: str) -> sql.Composed:
    """Record which property a column was made for."""
    return sql.SQL("COMMENT ON COLUMN {} IS {}").format(
        sql.Identifier(schema, table, column), sql.Literal(comment)
    )


#: Tables (and views) of a schema with their comments.
SCHEMA_TABLES = sql.SQL(
    "SELECT c.relname, obj_description(c.oid, 'pg_class')"
    " FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace"
    " WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'v', 'm', 'f')"
)

#: Columns of a table in order, with their type and comment.
TABLE_COLUMNS = sql.SQL(
    "SELECT a.attname, format_type(a.atttypid, a.atttypmod), col_description(c.oid, a.attnum)"
    " FROM pg_attribute AS a"
    " JOIN pg_class AS c ON c.oid = a.attrelid"
    " JOIN pg_namespace AS n ON n.oid = c.relnamespace"
    " WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped"
    " ORDER BY a.attnum"
)


def create_final_table(schema: str, table: str, columns: Sequence[tuple[str, str]]) -> sql.Composed:
    """A final table: the property columns (name, SQL type), then the `_airbyte_` columns."""
    definitions: list[sql.Composable] = [
        sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(type_sql))
        for name, type_sql in columns
    ]
    definitions += [
        sql.SQL("_airbyte_raw_id VARCHAR NOT NULL"),
        sql.SQL("_airbyte_extracted_at TIMESTAMP WITH TIME ZONE NOT NULL"),
        sql.SQL("_airbyte_meta JSONB NOT NULL"),
        sql.SQL("_airbyte_generation_id BIGINT"),
    ]
    return sql.SQL("CREATE TABLE {} ({})").format(
        sql.Identifier(schema, table), sql.SQL(", ").join(definitions)
    )


def add_column(schema: str, table: str, column: str, type_sql: str) -> sql.Composed:
    """A new nullable column for a new property."""
    return sql.SQL("ALTER TABLE {} ADD COLUMN {} {}").format(
        sql.Identifier(schema, table), sql.Identifier(column), sql.SQL(type_sql)
    )


def copy_into(schema: str, table: str, columns: Sequence[str]) -> sql.Composed:
    """COPY rows into the named columns of a table."""
    return sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(schema, table),
        sql.SQL(", ").join(sql.Identifier(column) for column in columns),
    )


def create_unique_index(schema: str, table: str, index: str, keys: Sequence[str]) -> sql.Composed:
    """The unique index on a dedup stream's key columns, used by the upsert."""
    return sql.SQL("CREATE UNIQUE INDEX IF NOT EXISTS {} ON {} ({})").format(
        sql.Identifier(index),
        sql.Identifier(schema, table),
        sql.SQL(", ").join(sql.Identifier(key) for key in keys),
    )


def create_staging_table(staging: str, schema: str, table: str) -> sql.Composed:
    """A transaction-private table shaped like the final table as it is now."""
    return sql.SQL("CREATE TEMPORARY TABLE {} (LIKE {}) ON COMMIT DROP").format(
        sql.Identifier(staging), sql.Identifier(schema, table)
    )


def upsert_from_staging(
    staging: str,
    schema: str,
    table: str,
    columns: Sequence[str],
    keys: Sequence[str],
    cursor: str | None,
) -> sql.Composed:
    """Insert the staged rows; a row whose key exists replaces it only if it wins (SPEC §6.3):
    greater cursor (a NULL cursor loses), then later `_airbyte_extracted_at`, then later
    arrival, which for a staged row is always later."""
    target = sql.Identifier(schema, table)
    newer_extraction = sql.SQL("EXCLUDED._airbyte_extracted_at >= {}._airbyte_extracted_at").format(
        sql.Identifier(table)
    )
    if cursor is None:
        wins = newer_extraction
    else:
        new = sql.SQL("EXCLUDED.{}").format(sql.Identifier(cursor))
        old = sql.SQL("{}.{}").format(sql.Identifier(table), sql.Identifier(cursor))
        wins = sql.SQL(
            "(({new} IS NOT NULL AND ({old} IS NULL OR {new} > {old}))"
            " OR ({new} IS NOT DISTINCT FROM {old} AND {newer}))"
        ).format(new=new, old=old, newer=newer_extraction)
    column_list = sql.SQL(", ").join(sql.Identifier(column) for column in columns)
    return sql.SQL(
        "INSERT INTO {target} AS {alias} ({columns}) SELECT {columns} FROM pg_temp.{staging}"
        " ON CONFLICT ({keys}) DO UPDATE SET {assignments} WHERE {wins}"
    ).format(
        target=target,
        alias=sql.Identifier(table),
        columns=column_list,
        staging=sql.Identifier(staging),
        keys=sql.SQL(", ").join(sql.Identifier(key) for key in keys),
        assignments=sql.SQL(", ").join(
            sql.SQL("{} = EXCLUDED.{}").format(sql.Identifier(column), sql.Identifier(column))
            for column in columns
        ),
        wins=wins,
    )


SAVEPOINT = sql.SQL("SAVEPOINT target_postgres_hp_batch")
RELEASE_SAVEPOINT = sql.SQL("RELEASE SAVEPOINT target_postgres_hp_batch")
ROLLBACK_TO_SAVEPOINT = sql.SQL("ROLLBACK TO SAVEPOINT target_postgres_hp_batch")
