"""Final tables and whole-table work: create and alter them, COPY into them, copy, move,
count and remove their rows."""

from __future__ import annotations

from collections.abc import Sequence

from psycopg import sql

#: The `_airbyte_` columns of a final table, after the property columns.
FINAL_META_COLUMNS = (
    "_airbyte_raw_id",
    "_airbyte_extracted_at",
    "_airbyte_meta",
    "_airbyte_generation_id",
)


def move_rows_of(
    schema: str, table: str, to_schema: str, to_table: str, of_schema: str, of_table: str
) -> sql.Composed:
    """Move from `table` to `to_table` (same columns) the rows whose raw id is in `of_table`."""
    return sql.SQL(
        "WITH moved AS (DELETE FROM {source} WHERE _airbyte_raw_id IN"
        " (SELECT _airbyte_raw_id FROM {owner}) RETURNING *)"
        " INSERT INTO {target} SELECT * FROM moved"
    ).format(
        source=sql.Identifier(schema, table),
        owner=sql.Identifier(of_schema, of_table),
        target=sql.Identifier(to_schema, to_table),
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


def alter_column_type(
    schema: str, table: str, column: str, type_sql: str, using: sql.SQL | None = None
) -> sql.Composed:
    """Change a column's type in place; `using` converts the current values (`{}` is the
    column; by default a cast to the new type)."""
    target = sql.SQL(type_sql)
    converted = (
        using.format(sql.Identifier(column))
        if using is not None
        else sql.SQL("{}::{}").format(sql.Identifier(column), target)
    )
    return sql.SQL("ALTER TABLE {} ALTER COLUMN {} TYPE {} USING {}").format(
        sql.Identifier(schema, table), sql.Identifier(column), target, converted
    )


def create_table_like(
    schema: str, table: str, like_schema: str, like: str, *, if_missing: bool = False
) -> sql.Composed:
    """A table with the columns of another (no indexes, no comments)."""
    create = sql.SQL("CREATE TABLE IF NOT EXISTS" if if_missing else "CREATE TABLE")
    return sql.SQL("{} {} (LIKE {})").format(
        create, sql.Identifier(schema, table), sql.Identifier(like_schema, like)
    )


def drop_table(schema: str, table: str) -> sql.Composed:
    """Drop a table of the target's own (a load side table) if it exists."""
    return sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(schema, table))


def truncate(schema: str, table: str) -> sql.Composed:
    """Empty a table inside the current transaction."""
    return sql.SQL("TRUNCATE TABLE {}").format(sql.Identifier(schema, table))


def delete_all(schema: str, table: str) -> sql.Composed:
    """Empty a table row by row (where TRUNCATE is refused, e.g. a foreign key points at it)."""
    return sql.SQL("DELETE FROM {}").format(sql.Identifier(schema, table))


def insert_from(
    schema: str, table: str, source_schema: str, source: str, columns: Sequence[str]
) -> sql.Composed:
    """Copy every row of `source` into `table`, column by column."""
    column_list = sql.SQL(", ").join(sql.Identifier(column) for column in columns)
    return sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {}").format(
        sql.Identifier(schema, table),
        column_list,
        column_list,
        sql.Identifier(source_schema, source),
    )


def has_rows(schema: str, table: str) -> sql.Composed:
    """One row if the table has any."""
    return sql.SQL("SELECT 1 FROM {} LIMIT 1").format(sql.Identifier(schema, table))


def count_rows(schema: str, table: str) -> sql.Composed:
    """How many rows a table holds."""
    return sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, table))
