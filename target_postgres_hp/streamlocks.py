"""Stream locks (SPEC §9): a run holds, until it ends, a lock per stream it loads, so two runs
never load the same stream's tables at once; a second run waits up to `lock_wait_seconds`."""

from __future__ import annotations

import logging
from collections.abc import Callable

import psycopg

from target_postgres_hp import sql
from target_postgres_hp.errors import StreamLocked
from target_postgres_hp.loading import PgConnection

logger = logging.getLogger("target-postgres-hp.connector")


class StreamLocks:
    """Advisory locks on a connection of their own, released when the run ends, however it
    ends (SPEC §9). Straight to the server they are session-level, and no transaction stays
    open. Through a pooler (`pooled`, known once the first connection is made) they are
    transaction-level, held by one transaction that lasts the run: a pooler in transaction
    mode keeps a client's server connection for as long as its transaction lasts, but hands
    it to other clients between two transactions, session locks and all (SPEC §12). That
    transaction takes no snapshot between statements and writes nothing, so it holds back no
    vacuum; it pins one server connection."""

    def __init__(
        self,
        open_connection: Callable[[], PgConnection],
        wait_seconds: int,
        pooled: Callable[[], bool],
    ) -> None:
        self._open = open_connection
        self._wait_seconds = wait_seconds
        self._pooled = pooled
        #: The session holding the locks, and the names locked.
        self._session: PgConnection | None = None
        self._locked: set[str] = set()

    def take(self, stream: str, name: str, shown: str | None = None) -> None:
        """Hold, until the run ends, the lock that keeps two runs from loading the same
        stream's tables at once (SPEC §9); wait up to `lock_wait_seconds` for another run
        holding it. `name` identifies the tables (the raw table's schema-qualified name);
        `shown` names them in messages, when the raw table is not made (direct layout)."""
        session = self._session
        if session is None or session.closed or session.broken:
            session = self._reopen()
        if name in self._locked:
            return
        key = (sql.LOCK_CLASS, name)
        tables = shown or name
        in_transaction = not session.autocommit
        got = session.execute(sql.TRY_XACT_LOCK if in_transaction else sql.TRY_LOCK, key)
        found = got.fetchone()
        if not (found and found[0]):
            wait = self._wait_seconds
            refusal = (
                f"Another run is loading stream {stream} (tables {tables}) into this database;"
                f" waited {wait} s for it to finish. Run the two one after the other, or raise"
                " lock_wait_seconds"
            )
            if wait <= 0:
                raise StreamLocked(refusal)
            logger.warning(
                "Another run is loading stream %s (tables %s); waiting up to %s s for it",
                stream,
                tables,
                wait,
            )
            self._wait(session, key, wait * 1000, refusal)
            logger.info("Stream %s: the other run has finished; loading", stream)
        self._locked.add(name)

    @staticmethod
    def _wait(session: PgConnection, key: tuple[int, str], timeout_ms: int, refusal: str) -> None:
        """Wait for a lock another run holds, at most `timeout_ms`. In a transaction the wait
        sits in a savepoint: one that times out undoes only itself, not the locks held."""
        if not session.autocommit:
            session.execute(sql.LOCK_WAIT_SAVEPOINT)
            session.execute(sql.set_lock_timeout(timeout_ms, local=True))
            try:
                session.execute(sql.XACT_LOCK, key)
            except (psycopg.errors.LockNotAvailable, psycopg.errors.QueryCanceled):
                session.execute(sql.UNDO_LOCK_WAIT)
                raise StreamLocked(refusal) from None
            session.execute(sql.RELEASE_LOCK_WAIT)
            return
        session.execute(sql.set_lock_timeout(timeout_ms))
        try:
            session.execute(sql.LOCK, key)
        except (psycopg.errors.LockNotAvailable, psycopg.errors.QueryCanceled):
            raise StreamLocked(refusal) from None
        finally:
            session.execute(sql.set_lock_timeout(0))

    def _reopen(self) -> PgConnection:
        """A new session for the stream locks. When the old one was lost, its locks went with
        it: they are taken again, unless another run took one meanwhile."""
        if self._session is not None:
            self._session.close()
        session = self._session = self._open()
        session.autocommit = not self._pooled()
        try_lock = sql.TRY_LOCK if session.autocommit else sql.TRY_XACT_LOCK
        for name in sorted(self._locked):
            got = session.execute(try_lock, (sql.LOCK_CLASS, name)).fetchone()
            if not (got and got[0]):
                msg = (
                    f"Lost the connection that held this run's lock on tables {name}, and"
                    " another run has taken them since: run again when it is done"
                )
                raise StreamLocked(msg)
        if self._locked:
            logger.warning(
                "Reconnected and took again this run's stream locks (%s)",
                ", ".join(sorted(self._locked)),
            )
        return session

    def close(self) -> None:
        """Release every lock (by closing their session)."""
        if self._session is not None:
            self._session.close()
            self._session = None
