"""A stream's plan: what its SCHEMA message decides once (SPEC §4-§6), used by every batch until
the next SCHEMA: where its rows go (raw table, final table), how a record is read and typed,
the key, cursor and deletion markers, the table layout and the load method."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from target_postgres_hp.decode import RecordDecoder
from target_postgres_hp.loading import FinalTarget
from target_postgres_hp.naming import Placement
from target_postgres_hp.runs import StreamRun

if TYPE_CHECKING:
    from target_postgres_hp.connector import PostgresConnector
    from target_postgres_hp.layouts import Layout
    from target_postgres_hp.loads import LoadMethod


@dataclass(frozen=True)
class StreamSchema:
    """What a SCHEMA message says of a stream, as its sink received it."""

    stream: str
    properties: dict[str, Any]
    #: Key properties, in key order.
    keys: list[str]
    #: `bookmark_properties` of the SCHEMA message; the first is the cursor.
    bookmarks: list[str]


@dataclass(frozen=True)
class Planning:
    """What a layout makes a stream's plan from."""

    schema: StreamSchema
    #: Where the stream's tables go (SPEC §6.4), worked out once for the plan.
    place: Placement
    load: LoadMethod
    connector: PostgresConnector
    run: StreamRun
    logger: logging.Logger


@dataclass
class StreamPlan:
    """How one stream is loaded until its next SCHEMA message."""

    stream: str
    placement: Placement
    layout: Layout
    load: LoadMethod
    #: The raw table (schema, name); None in the direct layout.
    raw: tuple[str, str] | None
    #: The schema of the stream's helper tables (removed keys) and the name theirs derive
    #: from: the raw table's, made or not.
    helpers: tuple[str, str]
    decoder: RecordDecoder
    #: Where typed rows go; None without a final table (raw only).
    final: FinalTarget | None = None
    #: A full refresh's live final table (the load is built in `final`, its side table).
    replaces: tuple[str, str] | None = None

    def describe(self) -> str:
        """Where the stream's rows go, for log lines."""
        raw = f"raw table {'.'.join(self.raw)}" if self.raw is not None else ""
        if self.final is None:
            return raw
        final = ".".join(self.replaces or (self.final.schema, self.final.table))
        return f"{final} ({raw})" if raw else final
