"""Loads and Singer table versions (`_airbyte_generation_id`): which rows a full refresh (an
overwrite, or a stream's ACTIVATE_VERSION) keeps and continues."""

from __future__ import annotations

from psycopg import sql


def delete_raw_before(schema: str, table: str) -> sql.Composed:
    """Remove the raw rows of earlier loads: ids are time-ordered, so those made before the
    current load's first id (`%s`) belong to earlier loads."""
    return sql.SQL("DELETE FROM {} WHERE _airbyte_raw_id < %s").format(
        sql.Identifier(schema, table)
    )


def first_raw_id_of_generation(schema: str, table: str) -> sql.Composed:
    """The oldest raw id of one Singer table version (`%s`) in a raw table (NULL if none)."""
    return sql.SQL("SELECT min(_airbyte_raw_id) FROM {} WHERE _airbyte_generation_id = %s").format(
        sql.Identifier(schema, table)
    )


def other_generation(schema: str, table: str) -> sql.Composed:
    """One row if the table holds a row of another Singer table version than `%s`."""
    return sql.SQL(
        "SELECT 1 FROM {} WHERE _airbyte_generation_id IS DISTINCT FROM %s LIMIT 1"
    ).format(sql.Identifier(schema, table))
