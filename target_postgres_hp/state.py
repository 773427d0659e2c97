"""STATE messages (SPEC §6.1, §9): each is kept byte for byte as the tap wrote it and emitted only
once every record received before it is committed, so a state never covers a row that is not,
and never before a full refresh whose records precede it has replaced the live rows: a state
that a later run could not keep its promise for (the load discarded) is never emitted."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass

from target_postgres_hp.runs import StreamRun


@dataclass(frozen=True)
class LoadHold:
    """A full refresh whose records came before a STATE, as it was when the STATE came."""

    run: StreamRun
    #: The run's loads done then: one more means this load replaced the live rows.
    loads_done: int
    #: Its records then: more (of the same load) mean the STATE was not after its last one.
    records: int
    #: Whether the load is of a table version, which a later run continues (SPEC §6.1);
    #: a load without one is discarded by the next run, so only its replacement frees it.
    versioned: bool

    @property
    def released(self) -> bool:
        """Whether the load no longer holds the STATE back."""
        run = self.run
        if run.loads_done > self.loads_done:
            return True
        return self.versioned and run.load_records > self.records


def holds_of(runs: Iterable[StreamRun]) -> tuple[LoadHold, ...]:
    """The full refreshes holding records now: those a STATE arriving now follows."""
    return tuple(
        LoadHold(run, run.loads_done, run.load_records, run.versioned)
        for run in runs
        if run.load_records
    )


class StateKeeper:
    """The latest STATE and where it came in the input (the number of records before it), and
    the full refreshes it waits for."""

    def __init__(self) -> None:
        self.latest: str | None = None
        self._seq = 0
        self._holds: tuple[LoadHold, ...] = ()
        #: An earlier state no load holds back any more, to emit while the latest waits for
        #: a load (a versioned load's states, each followed by more of its records).
        self._earlier: tuple[str, int] | None = None
        self._emitted: str | None = None

    def received(self, text: str, records_before: int, holds: tuple[LoadHold, ...]) -> None:
        """A STATE message's value (its exact text) after `records_before` records, and the
        full refreshes whose records precede it (`holds_of`)."""
        latest = self.latest
        if latest is not None and latest != self._emitted and self._free(self._holds):
            self._earlier = (latest, self._seq)
        self.latest = text
        self._seq = records_before
        self._holds = holds

    @staticmethod
    def _free(holds: tuple[LoadHold, ...]) -> bool:
        return all(hold.released for hold in holds)

    def emit_if_safe(self, pending: Iterable[int]) -> None:
        """Emit the latest state unless a record before it is uncommitted (`pending`: the
        sequence numbers of the first record of every uncommitted batch) or a full refresh
        before it has not replaced its table yet; else an earlier state that is safe."""
        first = min(pending, default=sys.maxsize)
        if self.latest and first > self._seq and self._free(self._holds):
            self._holds = ()
            self._earlier = None
            self.write(self.latest)
        elif self._earlier is not None and first > self._earlier[1]:
            text, self._earlier = self._earlier[0], None
            self.write(text)

    def write(self, text: str) -> None:
        """Write a state to standard output, unless it was just written."""
        if text == self._emitted:
            return
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
        self._emitted = text
