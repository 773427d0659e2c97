"""STATE messages (SPEC §9): each is kept byte for byte as the tap wrote it and emitted only once
every record received before it is committed, so a state never covers a row that is not."""

from __future__ import annotations

import sys
from collections.abc import Iterable


class StateKeeper:
    """The latest STATE and where it came in the input (the number of records before it)."""

    def __init__(self) -> None:
        self.latest: str | None = None
        self._seq = 0
        self._emitted: str | None = None

    def received(self, text: str, records_before: int) -> None:
        """A STATE message's value (its exact text) after `records_before` records."""
        self.latest = text
        self._seq = records_before

    def emit_if_safe(self, pending: Iterable[int]) -> None:
        """Emit the latest state unless a record before it is uncommitted (`pending`: the
        sequence numbers of the first record of every uncommitted batch)."""
        if self.latest and min(pending, default=self._seq + 1) > self._seq:
            self.write(self.latest)

    def write(self, text: str) -> None:
        """Write a state to standard output, unless it was just written."""
        if text == self._emitted:
            return
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
        self._emitted = text
