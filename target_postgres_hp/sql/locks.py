"""Locks: the advisory locks that keep two runs off one stream, the lock timeout, and the
lock waits of the run's sessions (who blocks them, and cancelling a wait).

Straight to the server the stream locks are session-level (no transaction stays open). Through
a pooler they are transaction-level, held by one transaction that lasts the run: a
session-level lock would stay with a server connection the pooler hands to other clients
(SPEC §12)."""

from __future__ import annotations

from psycopg import sql

#: The first half of the target's advisory lock keys; the second is `hashtext` of the locked
#: name. Two-integer keys and hashtext work on every PostgreSQL from 9.5.
LOCK_CLASS = 0x68700001
TRY_LOCK = sql.SQL("SELECT pg_try_advisory_lock(%s, hashtext(%s))")
LOCK = sql.SQL("SELECT pg_advisory_lock(%s, hashtext(%s))")
TRY_XACT_LOCK = sql.SQL("SELECT pg_try_advisory_xact_lock(%s, hashtext(%s))")
XACT_LOCK = sql.SQL("SELECT pg_advisory_xact_lock(%s, hashtext(%s))")
#: Around a wait for a stream lock: a wait that times out undoes only itself, not the locks the
#: transaction already holds.
LOCK_WAIT_SAVEPOINT = sql.SQL("SAVEPOINT target_postgres_hp_lock_wait")
RELEASE_LOCK_WAIT = sql.SQL("RELEASE SAVEPOINT target_postgres_hp_lock_wait")
UNDO_LOCK_WAIT = sql.SQL("ROLLBACK TO SAVEPOINT target_postgres_hp_lock_wait")


#: Of the backends `%s` (an int array), those waiting for a lock: the waiting pid, the relation
#: it waits for (if a table's), and per session holding it: pid, application, user, and since
#: when its transaction runs (NULL where the role may not see another role's sessions).
LOCK_WAITS = sql.SQL(
    "SELECT w.pid,"
    " (SELECT format('%%I.%%I', n.nspname, c.relname) FROM pg_locks AS l"
    "  JOIN pg_class AS c ON c.oid = l.relation JOIN pg_namespace AS n ON n.oid = c.relnamespace"
    "  WHERE l.pid = w.pid AND NOT l.granted LIMIT 1),"
    " b.pid, a.application_name, a.usename, a.xact_start"
    " FROM unnest(%s::int[]) AS w(pid)"
    " CROSS JOIN LATERAL unnest(pg_blocking_pids(w.pid)) AS b(pid)"
    " LEFT JOIN pg_stat_activity AS a ON a.pid = b.pid"
    " ORDER BY 1, 3"
)


#: End the statement a backend of the run waits in (`%s`: its pid).
CANCEL_BACKEND = sql.SQL("SELECT pg_cancel_backend(%s)")


def set_lock_timeout(milliseconds: int, *, local: bool = False) -> sql.Composed:
    """How long the session (with `local`, the transaction) waits for a lock."""
    statement = "SET LOCAL lock_timeout = {}" if local else "SET lock_timeout = {}"
    return sql.SQL(statement).format(sql.Literal(milliseconds))
