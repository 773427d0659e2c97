"""Waiting for another session's lock, visibly and within bounds (SPEC §9).

Any statement of a run can meet a lock another session holds: the run's advisory stream lock,
an `ALTER TABLE` behind a long report query, a COPY behind someone's `LOCK TABLE`. Rather than
bound each statement on its own, a watcher thread looks, once a second, at every backend of the
run with `pg_blocking_pids`: a backend that waits is reported every `REPORT_EVERY` seconds,
naming the session that holds the lock, and once it has waited `lock_wait_seconds` its
statement is cancelled and the run ends with `gave_up`, one sentence. The watcher has its own
connection, so it sees the waits of connections that are busy waiting.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg

from target_postgres_hp import sql
from target_postgres_hp.connection import PgSession
from target_postgres_hp.errors import first_line

PgConnection = psycopg.Connection[tuple[Any, ...]]

#: Seconds between two log lines about the same wait.
REPORT_EVERY = 30.0
#: Seconds between two looks at the run's backends.
POLL_EVERY = 1.0

logger = logging.getLogger("target-postgres-hp.locks")


@dataclass
class _Wait:
    """One backend of the run waiting for a lock."""

    since: float
    reported: float


class LockWatch:
    """Reports and bounds the lock waits of a run's connections."""

    def __init__(self, connect: Callable[[], PgConnection], wait_seconds: int) -> None:
        self._connect = connect
        self.wait_seconds = wait_seconds
        self._watched: dict[int, weakref.ref[PgSession]] = {}
        self._waits: dict[int, _Wait] = {}
        self._guard = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._monitor: PgConnection | None = None
        #: Why a wait was cut short, once one was: the run's refusal.
        self.gave_up: str | None = None

    def watch(self, conn: PgSession) -> None:
        """Watch a connection of the run for as long as it is open: the backend its open
        transaction runs on (through a pooler, a different one each transaction)."""
        with self._guard:
            self._watched[id(conn)] = weakref.ref(conn)
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="lock-watch", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop watching and close the watcher's connection."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._monitor is not None:
            self._monitor.close()
            self._monitor = None

    def _pids(self) -> list[int]:
        """The backends of the run's open transactions."""
        pids = []
        with self._guard:
            for key, ref in list(self._watched.items()):
                conn = ref()
                if conn is None or conn.closed:
                    del self._watched[key]
                elif (pid := conn.backend_in_transaction) is not None:
                    pids.append(pid)
        return pids

    def _run(self) -> None:
        while not self._stop.wait(POLL_EVERY):
            pids = self._pids()
            if not pids:
                continue
            try:
                self._look(pids)
            except psycopg.Error as error:
                # A lost watcher connection is made again at the next look; the run's own
                # connections report their losses themselves.
                logger.debug("Lock watch: %s", first_line(error))
                if self._monitor is not None:
                    self._monitor.close()
                self._monitor = None
            except Exception:  # the watcher must never end the run itself
                logger.debug("Lock watch failed", exc_info=True)

    def _look(self, pids: list[int]) -> None:
        if self._monitor is None:
            self._monitor = self._connect()
            self._monitor.autocommit = True
        rows = self._monitor.execute(sql.LOCK_WAITS, (pids,)).fetchall()
        now = time.monotonic()
        waiting: dict[int, list[tuple[Any, ...]]] = {}
        for row in rows:
            waiting.setdefault(row[0], []).append(row)
        for pid in list(self._waits):
            if pid not in waiting:
                del self._waits[pid]
        for pid, blockers in waiting.items():
            wait = self._waits.setdefault(pid, _Wait(since=now, reported=now))
            held = _describe(blockers)
            waited = now - wait.since
            if waited >= self.wait_seconds:
                if pid not in self._pids():
                    # That transaction ended meanwhile: through a pooler, the backend may
                    # already run another client's.
                    del self._waits[pid]
                    continue
                self.gave_up = (
                    f"Waited {self.wait_seconds} s (lock_wait_seconds) for {held}: end that"
                    " session's transaction or run again when it is done, or raise"
                    " lock_wait_seconds. Every record before the last STATE this run emitted"
                    " is committed"
                )
                logger.warning("Giving up the wait for %s after %.0f s", held, waited)
                self._monitor.execute(sql.CANCEL_BACKEND, (pid,))
                del self._waits[pid]
            elif now - wait.reported >= REPORT_EVERY:
                wait.reported = now
                logger.warning(
                    "Waiting %.0f s so far for %s; giving up after %s s (lock_wait_seconds)",
                    waited,
                    held,
                    self.wait_seconds,
                )


def _describe(blockers: list[tuple[Any, ...]]) -> str:
    """What the run waits for and who holds it, for log lines and the refusal."""
    relation = blockers[0][1]
    what = f"a lock on {relation}" if relation else "a lock"
    sessions = "; ".join(
        f"pid {pid}, application {application or '(none)'!r}, user {user or '(hidden)'}"
        + (f", in a transaction since {since.isoformat(timespec='seconds')}" if since else "")
        for _, _, pid, application, user, since in blockers
    )
    plural = "sessions" if len(blockers) > 1 else "session"
    return f"{what} held by another {plural} ({sessions})"
