"""The connections streaming batches hold: each sink's batch streams over a pair (raw and
final table) taken from the run's one pool and kept between the sink's batches' rows until it
commits. A bounded number of pairs is out at once; a sink that finds none free has the target
commit the batch that waited longest (`runs.KeepsRuns.make_room`)."""

from __future__ import annotations

import threading
from collections.abc import Callable

import psycopg
import sqlalchemy as sa
from sqlalchemy.pool import PoolProxiedConnection

from target_postgres_hp.errors import InternalError
from target_postgres_hp.loading import KeptData, PgConnection

#: Sinks that may stream a batch at once; each holds two connections meanwhile.
MAX_STREAMING_BATCHES = 8
#: The same through a connection pooler in transaction mode, where each of those open
#: transactions holds one of the pool's server connections: few enough that the run's open
#: transactions (these, the stream locks' and a DDL statement's) fit in small pools, as
#: managed providers size them (SPEC §12). A batch that waited for a server connection held
#: by another batch of the same run would wait for ever.
POOLED_STREAMING_BATCHES = 2


def driver(handle: PoolProxiedConnection) -> PgConnection:
    """The psycopg connection under a pooled handle."""
    connection = handle.driver_connection
    if not isinstance(connection, psycopg.Connection):
        msg = "the engine must use the psycopg driver"
        raise InternalError(msg)
    return connection


class StreamingPairs:
    """Hands out and takes back the pairs of pooled connections batches stream over."""

    def __init__(self, engine: Callable[[], sa.Engine]) -> None:
        self._engine = engine
        self._lock = threading.Lock()
        #: The pool's handles of the connections out, by connection.
        self._checked_out: dict[int, PoolProxiedConnection] = {}
        self._pairs_out = 0
        #: How many batches may stream at once (`POOLED_STREAMING_BATCHES` through a pooler).
        self.limit = MAX_STREAMING_BATCHES
        #: Buffers for the COPY data of a batch (raw and final table), free for the next
        #: batch: memory a committed batch used is reused, not given back to the system
        #: and taken again page by page, and there are never more of them than batches
        #: streaming at once.
        self._free_buffers: list[tuple[KeptData, KeptData]] = []

    @property
    def slots_left(self) -> int:
        """How many more sinks can start a streaming batch without waiting."""
        return self.limit - self._pairs_out

    def acquire(self) -> tuple[PgConnection, PgConnection] | None:
        """Two pooled connections for one sink's streaming batch (raw and final), or None when
        `limit` batches already hold theirs."""
        with self._lock:
            if self._pairs_out >= self.limit:
                return None
            self._pairs_out += 1
        handles: list[PoolProxiedConnection] = []
        try:
            for _ in range(2):
                handles.append(self._engine().raw_connection())
        except BaseException:
            for handle in handles:
                handle.close()
            with self._lock:
                self._pairs_out -= 1
            raise
        pair = tuple(driver(handle) for handle in handles)
        with self._lock:
            for conn, handle in zip(pair, handles, strict=True):
                self._checked_out[id(conn)] = handle
        return pair[0], pair[1]

    def buffers(self) -> tuple[KeptData, KeptData]:
        """Buffers for a new batch's COPY data: free ones of a finished batch, or new ones."""
        with self._lock:
            return self._free_buffers.pop() if self._free_buffers else (KeptData(), KeptData())

    def give_back(self, buffers: tuple[KeptData, KeptData]) -> None:
        """Take back the buffers of a batch that is committed (or given up)."""
        with self._lock:
            if len(self._free_buffers) < MAX_STREAMING_BATCHES:
                self._free_buffers.append(buffers)

    def release(self, pair: tuple[PgConnection, PgConnection]) -> None:
        """Take back a sink's connections once its batch is committed or rolled back; a
        connection lost or left inside a transaction is closed instead of kept."""
        with self._lock:
            self._pairs_out -= 1
            handles = [self._checked_out.pop(id(conn)) for conn in pair]
        for conn, handle in zip(pair, handles, strict=True):
            if conn.closed or conn.broken or conn.info.transaction_status:
                handle.invalidate()
            else:
                handle.close()

    def close(self) -> None:
        """Close the connections of batches a failure left open: never committed."""
        with self._lock:
            held = list(self._checked_out.values())
            self._checked_out.clear()
        for handle in held:
            handle.invalidate()
