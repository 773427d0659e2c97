"""Load methods (SPEC §6): how a stream's batches meet the rows already in its tables, as small
strategy objects registered by name in `LOAD_METHODS`.

- `append`: every record is a new row.
- `append-dedup`: one row per key, the winner of `winner.py`; hard deletes remove a key.
- `overwrite`: each load (a run, or one Singer table version) is built in a side table and
  replaces the live rows atomically when it ends, so readers never see a half load.

A stream that receives Singer table versions is a full refresh whatever its method
(`full_refresh_of`, SPEC §6.1): readers never see two versions mixed.

A load method sees the stream through `Loading` (its sink): the plan, the run and the connector.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar, Protocol, TypeVar

import psycopg

from target_postgres_hp import fullrefresh
from target_postgres_hp.connector import PostgresConnector
from target_postgres_hp.errors import InternalError, LoadNotReplaced, first_line
from target_postgres_hp.naming import derived_name
from target_postgres_hp.ownership import DELETES_OF, LOAD_OF
from target_postgres_hp.rawdata import first_id_at
from target_postgres_hp.runs import StreamRun

if TYPE_CHECKING:
    from target_postgres_hp.plan import StreamPlan

T = TypeVar("T")


class Loading(Protocol):
    """A stream being loaded, as its load method sees it."""

    @property
    def stream_name(self) -> str: ...
    @property
    def connector(self) -> PostgresConnector: ...
    @property
    def plan(self) -> StreamPlan: ...
    @property
    def run(self) -> StreamRun: ...
    @property
    def logger(self) -> logging.Logger: ...

    def retrying(self, doing: str, step: Callable[[], T]) -> T: ...


class LoadMethod:
    """How batches meet existing rows; the base is append and append-dedup's behaviour."""

    name: ClassVar[str]
    #: Whether the stream's key deduplicates its rows.
    dedups: ClassVar[bool] = True
    #: Whether each load replaces the stream's rows (full refresh).
    replaces: ClassVar[bool] = False

    def prepare_final(
        self,
        plan: StreamPlan,
        connector: PostgresConnector,
        run: StreamRun,
        recover: Callable[[], None],
    ) -> None:
        """Ready the final table's helpers once it has its columns and key index: the table
        of removed keys (hard deletes; kept and honoured under soft_delete too, so a key an
        earlier hard_delete run removed is never brought back by an older record, SPEC
        §6.3), then `recover` (rows an earlier run left untyped), then whether the first
        batch must merge with rows already there."""
        final = plan.final
        if final is None:
            return
        tombstones = (plan.helpers[0], derived_name(plan.helpers[1], "deletes"))
        if final.keys and (final.deleted or connector.has_table(*tombstones)):
            connector.prepare_companion(
                *tombstones,
                (final.schema, final.table),
                (DELETES_OF, plan.stream),
                fresh=False,
            )
            connector.prepare_key_index(*tombstones, final.keys, final.cursor, final.key_types)
            final.tombstones = tombstones
            final.has_tombstones = connector.has_rows(*tombstones)
        recover()
        # Rows already there will meet the batch's keys: merge from the first batch on, so no
        # batch is written twice. Into an empty table the first batch tries a plain COPY.
        final.upsert_needed = bool(final.keys) and connector.has_rows(final.schema, final.table)

    def before_batch(self, stream: Loading, generation: int | None) -> None:
        """Called before a batch gets its first record (of table version `generation`, None
        while the stream uses none)."""

    def staged(self, run: StreamRun, raw_id: str) -> None:
        """Called for every record staged."""

    def version_ready(self, run: StreamRun, version: int) -> bool:
        """Whether ACTIVATE_VERSION `version` can be applied now. Only full refreshes see
        one: a stream that receives table versions is loaded by `full_refresh_of` its method."""
        raise InternalError(_VERSIONS_ONLY)

    def apply_version(self, stream: Loading, version: int) -> None:
        """Apply ACTIVATE_VERSION: the stream's table holds only rows of `version`."""
        raise InternalError(_VERSIONS_ONLY)

    def finish_run(self, stream: Loading, activate: Callable[[int], None]) -> None:
        """At the end of input, every record committed: what the method does then (an
        ACTIVATE_VERSION still waiting for its records is a full refresh's, `activate`)."""


_VERSIONS_ONLY = "ACTIVATE_VERSION reaches only full refreshes (loads.full_refresh_of)"


class Append(LoadMethod):
    """Every record is a new row."""

    name = "append"
    dedups = False


class Dedup(LoadMethod):
    """One row per key."""

    name = "append-dedup"


class Overwrite(LoadMethod):
    """Each load replaces the stream's rows when it ends (SPEC §6.1)."""

    name = "overwrite"
    replaces = True

    def prepare_final(
        self,
        plan: StreamPlan,
        connector: PostgresConnector,
        run: StreamRun,
        recover: Callable[[], None],
    ) -> None:
        """Records go to a side table beside the live one; a load this run already opened
        (under an earlier SCHEMA of the stream) goes on in it."""
        final = plan.final
        if final is None:
            return
        plan.replaces = (final.schema, final.table)
        final.table = derived_name(final.table, "load")
        if run.load_open:
            _prepare_side(plan, connector, run, fresh=False)

    def before_batch(self, stream: Loading, generation: int | None) -> None:
        """A batch opens the load if none is open."""
        if not stream.run.load_open:
            stream.retrying(
                "starting a full refresh of",
                lambda: _prepare_side(
                    stream.plan, stream.connector, stream.run, fresh=True, generation=generation
                ),
            )

    def staged(self, run: StreamRun, raw_id: str) -> None:
        run.load_records += 1
        if run.load_since is None:  # a raw-only full refresh has no side table
            run.load_since = raw_id

    def version_ready(self, run: StreamRun, version: int) -> bool:
        """A new table version ends the load once it holds a record."""
        return run.load_records > 0

    def apply_version(self, stream: Loading, version: int) -> None:
        _finish_load(stream)

    def finish_run(self, stream: Loading, activate: Callable[[int], None]) -> None:
        """End the open load, or, if the run brought none, an empty one (the table empties)."""
        run = stream.run
        if run.pending_version is not None and not run.load_records:
            stream.logger.warning(
                "ACTIVATE_VERSION %s of stream %s is applied at the end of input although no"
                " record of that version arrived: the stream's tables are emptied",
                run.pending_version,
                stream.stream_name,
            )
        if run.load_open or not run.loads_done:
            _finish_load(stream)
        run.pending_version = None


class VersionedAppend(Overwrite):
    """An `append` stream that receives Singer table versions: a full refresh (SPEC §6.1),
    whose loads keep every record as a row, as `append` does."""

    name = "append"
    dedups = False


def full_refresh_of(method: LoadMethod) -> LoadMethod:
    """The load method of a stream that receives table versions (versioned records or
    ACTIVATE_VERSION): a full refresh whatever its load method (SPEC §6.1), so no reader ever
    sees two versions mixed, during a load or after a failed or killed one. `append` keeps its
    rows' duplicates; `append-dedup` and `overwrite` keep one row per key."""
    if method.replaces:
        return method
    return _FULL_REFRESH if method.dedups else _VERSIONED_APPEND


def _prepare_side(
    plan: StreamPlan,
    connector: PostgresConnector,
    run: StreamRun,
    *,
    fresh: bool,
    generation: int | None = None,
) -> None:
    """The table a full refresh's load is built in, beside the live table (SPEC §6.1). A new
    load (`fresh`) continues the one an earlier run left unfinished for the same table version
    (`generation`; None for records without one), if there is one, since that run's STATEs
    covered its records."""
    final, replaces = plan.final, plan.replaces
    if final is None or replaces is None:
        if fresh and plan.raw is not None and generation is not None and run.load_since is None:
            # Raw rows alone: a load of this table version an earlier run began goes on.
            run.load_since = fullrefresh.raw_load_start(
                connector, plan.raw, plan.stream, generation
            )
        return
    side = (final.schema, final.table)
    if fresh:
        since = fullrefresh.open_load(connector, side, replaces, plan.raw, plan.stream, generation)
        fresh = since is None
        run.load_since = since or first_id_at(time.time_ns() // 1_000_000)
    connector.prepare_companion(
        *side, replaces, (LOAD_OF, plan.stream), fresh=fresh, since=run.load_since
    )
    connector.prepare_key_index(*side, final.keys, final.cursor, final.key_types)
    final.upsert_needed = bool(final.keys) and not fresh and connector.has_rows(*side)
    run.load_open = True


def _finish_load(stream: Loading) -> None:
    """End a full refresh: the final table's contents become the load's, atomically, and raw
    rows of earlier loads go (SPEC §6.1). A load without records empties the table."""
    plan, run, connector = stream.plan, stream.run, stream.connector
    if plan.final is not None and not run.load_open:
        generation = run.generation
        stream.retrying(
            "starting a full refresh of",
            lambda: _prepare_side(plan, connector, run, fresh=True, generation=generation),
        )
    side = (plan.final.schema, plan.final.table) if plan.final is not None else None
    replaced = plan.replaces or plan.raw
    where = ".".join(replaced) if replaced is not None else plan.stream
    removed_keys = (plan.helpers[0], derived_name(plan.helpers[1], "deletes"))
    try:
        count = stream.retrying(
            "ending the full refresh of",
            lambda: fullrefresh.replace_contents(
                connector, plan.replaces, side, plan.raw, run.load_since, removed_keys
            ),
        )
    except psycopg.Error as error:
        msg = (
            f"Could not end the full refresh of stream {stream.stream_name}: replacing the"
            f" rows of {where} failed ({first_line(error)}). {where} is unchanged and the"
            " load is kept, so the next run continues it"
        )
        raise LoadNotReplaced(msg) from None
    stream.logger.info(
        "Full refresh of stream %s done: %s now holds the %s rows of this load",
        stream.stream_name,
        where,
        count,
    )
    run.load_open = False
    run.load_records = 0
    run.load_since = None
    run.loads_done += 1


#: The load methods by setting value (`config.LoadMethod`); a new one is a class above and a
#: line here, plus its setting value and docs.
LOAD_METHODS: dict[str, LoadMethod] = {
    method.name: method for method in (Append(), Dedup(), Overwrite())
}
_FULL_REFRESH = LOAD_METHODS["overwrite"]
_VERSIONED_APPEND = VersionedAppend()
