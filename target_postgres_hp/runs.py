"""What a run knows of its streams, kept by the target across the sinks of a stream (a SCHEMA
change replaces a stream's sink, not its run)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass
class StreamRun:
    """What a run knows of one stream across its sinks."""

    #: The Singer table version given to records that carry none (last ACTIVATE_VERSION).
    active_version: int = 0
    #: Whether the stream uses table versions (a record carried one, or ACTIVATE_VERSION came).
    versioned: bool = False
    #: An ACTIVATE_VERSION waiting for a record of its version (SPEC §6.1).
    pending_version: int | None = None
    #: The table versions of the records received.
    versions: set[int] = field(default_factory=set)
    #: Full refresh: a load is open (its side table exists) and how many records it holds.
    load_open: bool = False
    load_records: int = 0
    #: Full refresh: the raw id the load's raw rows start from; earlier ones are older loads.
    load_since: str | None = None
    #: Full refresh: loads completed in this run.
    loads_done: int = 0
    #: Progress: records received and committed, rows with values NULLed by typing, and
    #: those values; when the first record came and when progress was last logged.
    received: int = 0
    committed: int = 0
    nulled_rows: int = 0
    nulled_values: int = 0
    started: float = 0.0
    reported: float = 0.0

    @property
    def generation(self) -> int | None:
        """The table version a new load is for: None while the stream uses none."""
        return self.active_version if self.versioned else None


@dataclass
class RunRegistry:
    """What the run knows of its streams."""

    #: Per stream: its `StreamRun`.
    streams: dict[str, StreamRun] = field(default_factory=dict)
    #: Per stream: the `bookmark_properties` of its latest SCHEMA message.
    bookmarks: dict[str, list[str]] = field(default_factory=dict)


@runtime_checkable
class KeepsRuns(Protocol):
    """The target as its sinks see it: it keeps the run, commits another stream's batch when
    a new batch finds every pair of streaming connections taken, and commits a sink's batch
    (`drain_one`) when its stream turns into a full refresh."""

    @property
    def runs(self) -> RunRegistry: ...

    def make_room(self) -> None: ...

    def drain_one(self, sink: Any) -> None: ...
