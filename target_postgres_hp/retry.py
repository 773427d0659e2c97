"""The one retry policy of the load (SPEC §9): a step whose connection is lost is run again
on a new connection after `RETRY_DELAYS`, then the run stops with one sentence. Every step
given to it is one transaction or idempotent, so a repeat cannot apply anything twice."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

import psycopg

from target_postgres_hp.connection import connection_lost
from target_postgres_hp.errors import ConnectError, ConnectionLost, first_line

T = TypeVar("T")

#: Seconds to wait before each new attempt at a step whose connection was lost.
RETRY_DELAYS = (1.0, 2.0, 4.0, 8.0)


def transient(error: BaseException) -> bool:
    """Whether a new connection may succeed where `error` failed: the connection was lost, a
    new one could not be opened, or the server's own statement_timeout cut a statement short
    (SPEC §12; as opposed to the server refusing the statement)."""
    if isinstance(error, ConnectError):
        return True
    return isinstance(error, psycopg.OperationalError) and (
        connection_lost(error) or statement_timed_out(error)
    )


def statement_timed_out(error: psycopg.Error) -> bool:
    """Whether the server cancelled the statement on a statement_timeout (not on a lock
    wait the run gave up, nor on an administrator's cancel)."""
    return error.sqlstate == "57014" and "statement timeout" in (error.diag.message_primary or "")


def retrying(
    step: Callable[[], T],
    *,
    stream: str,
    doing: str,
    logger: logging.Logger,
    step_name: str | None = None,
    after_failure: Callable[[BaseException], None] | None = None,
) -> T:
    """Run `step` (`doing` stream `stream`: "writing", "setting up the tables of", ...) until
    it succeeds, at most `len(RETRY_DELAYS)` more times when its connection is lost.
    `step_name` names the step in the warning of each retry ("writing a batch of 10 records";
    by default `doing` the stream). `after_failure` sees every failure, transient or not,
    before it is retried or raised."""
    attempt = 0
    while True:
        try:
            return step()
        except BaseException as error:
            if after_failure is not None:
                after_failure(error)
            if not transient(error):
                raise
            if attempt == len(RETRY_DELAYS):
                if isinstance(error, psycopg.Error) and statement_timed_out(error):
                    msg = (
                        f"The server cancelled a statement of stream {stream} on its"
                        f" statement_timeout {attempt + 1} times while {doing} it: raise the"
                        " statement_timeout set for the loading role or database (ALTER ROLE"
                        " ... SET statement_timeout). Every record before the last STATE this"
                        " run emitted is committed"
                    )
                    raise ConnectionLost(msg) from None
                msg = (
                    f"Lost the connection to the database while {doing} stream {stream}, and"
                    f" {attempt} more attempts failed too (last error: {first_line(error)})."
                    " Every record before the last STATE this run emitted is committed: run"
                    " again from that state"
                )
                raise ConnectionLost(msg) from None
            delay = RETRY_DELAYS[attempt]
            attempt += 1
            logger.warning(
                "Stream %s: lost the connection to the database while %s (%s); trying again"
                " in %s s",
                stream,
                step_name or f"{doing} it",
                first_line(error),
                delay,
            )
            time.sleep(delay)
