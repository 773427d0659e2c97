"""Session settings every connection gets, and the savepoint around a batch."""

from __future__ import annotations

from collections.abc import Sequence

from psycopg import sql


def session_setup(search_path: Sequence[str]) -> sql.Composed:
    """UTC, ISO dates and the configured schemas, for every connection."""
    return sql.SQL("SET TIME ZONE 'UTC'; SET DateStyle TO ISO, MDY; SET search_path TO {}").format(
        sql.SQL(", ").join(sql.Identifier(name) for name in search_path)
    )


SAVEPOINT = sql.SQL("SAVEPOINT target_postgres_hp_batch")
RELEASE_SAVEPOINT = sql.SQL("RELEASE SAVEPOINT target_postgres_hp_batch")
ROLLBACK_TO_SAVEPOINT = sql.SQL("ROLLBACK TO SAVEPOINT target_postgres_hp_batch")
