"""Session settings every connection gets, and the savepoint around a batch."""

from __future__ import annotations

from collections.abc import Sequence

from psycopg import sql


def session_setup(search_path: Sequence[str]) -> sql.Composed:
    """UTC, ISO dates and the configured schemas, for every connection."""
    return sql.SQL("SET TIME ZONE 'UTC'; SET DateStyle TO ISO, MDY; SET search_path TO {}").format(
        sql.SQL(", ").join(sql.Identifier(name) for name in search_path)
    )


#: What the server holds of the session when the target connects (SPEC §12): the real backend
#: (a pooler shows its clients a pid of its own), and whether the server takes writes.
SERVER_SESSION = sql.SQL(
    "SELECT pg_backend_pid(), pg_is_in_recovery(), current_setting('transaction_read_only')"
)

#: Of the settings named in `%s` (a text array), the value in force and where it comes from
#: (`client` for the connection's own `options`; `user`, `database`, `configuration file`
#: for what a DBA or provider set). A setting the server lacks is not listed.
SETTING_SOURCES = sql.SQL(
    "SELECT name, current_setting(name), source FROM pg_settings WHERE name = ANY(%s)"
)


def transaction_settings(
    settings: Sequence[tuple[str, str]], *, with_pid: bool = False
) -> sql.Composed:
    """One statement giving the transaction it runs in these settings (name, value): what a
    pooler cannot carry from one transaction to the next (SPEC §12); with `with_pid`, its
    first column is the backend's pid."""
    columns: list[sql.Composable] = [sql.SQL("pg_backend_pid()")] if with_pid else []
    columns += [
        sql.SQL("set_config({}, {}, true)").format(sql.Literal(name), sql.Literal(value))
        for name, value in settings
    ]
    return sql.SQL("SELECT {}").format(sql.SQL(", ").join(columns))


def set_session(name: str, value: str) -> sql.Composed:
    """A session setting (`SET name = value`)."""
    return sql.SQL("SET {} = {}").format(sql.Identifier(name), sql.Literal(value))


SAVEPOINT = sql.SQL("SAVEPOINT target_postgres_hp_batch")
RELEASE_SAVEPOINT = sql.SQL("RELEASE SAVEPOINT target_postgres_hp_batch")
ROLLBACK_TO_SAVEPOINT = sql.SQL("ROLLBACK TO SAVEPOINT target_postgres_hp_batch")
