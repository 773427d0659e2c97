"""Sinks move one stream's records into its raw table and its typed final table: each batch is
typed in Python and streamed into both tables by a `loading.BatchWriter`, which commits the
two together at the end of the batch."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

import msgspec
import psycopg
from singer_sdk.sql import SQLSink

from target_postgres_hp import sql
from target_postgres_hp.casting import (
    JSON_TEXT_COLUMNS,
    Cast,
    ColumnType,
    RowCaster,
    cast_for,
    column_type,
    effective_type,
)
from target_postgres_hp.connection import connection_lost
from target_postgres_hp.connector import DELETES_OF, LOAD_OF, PostgresConnector
from target_postgres_hp.errors import (
    ConnectError,
    ConnectionLost,
    InternalError,
    KeyNotStorable,
    LoadNotReplaced,
    TargetError,
    first_line,
)
from target_postgres_hp.loading import BatchWriter, FinalTarget, PgConnection, write_typed
from target_postgres_hp.naming import (
    derived_name,
    final_identifier,
    raw_identifier,
)
from target_postgres_hp.rawdata import RawRowBuilder, clean_record, data_json, first_id_at
from target_postgres_hp.records import RecordFields

if TYPE_CHECKING:
    from singer_sdk import Target

T = TypeVar("T")

#: Properties whose value marks a record as a delete (SPEC §6.3).
DELETION_MARKERS = ("_ab_cdc_deleted_at", "_sdc_deleted_at")


def _json_text(value: object) -> str:
    """A value as JSON text for a message, exact numbers unquoted."""
    if isinstance(value, Decimal):
        return str(value)
    return json.dumps(value, default=str, ensure_ascii=False)


@dataclass
class StreamRun:
    """What a run knows of one stream across its sinks (a SCHEMA change replaces the sink)."""

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


@dataclass
class RunRegistry:
    """What the run knows of its streams, kept by the target across the sinks of a stream."""

    #: Per stream: its `StreamRun`.
    streams: dict[str, StreamRun] = field(default_factory=dict)
    #: Per stream: the `bookmark_properties` of its latest SCHEMA message.
    bookmarks: dict[str, list[str]] = field(default_factory=dict)


@runtime_checkable
class KeepsRuns(Protocol):
    """A target that keeps a `RunRegistry` (this package's)."""

    @property
    def runs(self) -> RunRegistry: ...


#: Seconds between two progress lines of a stream.
PROGRESS_EVERY = 15.0
#: Seconds to wait before each new attempt at a batch whose connection was lost.
RETRY_DELAYS = (1.0, 2.0, 4.0, 8.0)


class PostgresSink(SQLSink[PostgresConnector]):
    """Writes a stream's records to its raw table and, unless `disable_type_dedupe`, to its
    final table."""

    connector_class = PostgresConnector

    def __init__(
        self,
        target: Target,
        stream_name: str,
        schema: dict[str, Any],
        key_properties: Sequence[str] | None,
        connector: PostgresConnector | None = None,
    ) -> None:
        super().__init__(target, stream_name, schema, key_properties, connector=connector)
        if not isinstance(target, KeepsRuns):
            msg = "PostgresSink runs under target-postgres-hp's target, which keeps the run"
            raise InternalError(msg)
        self.runs = target.runs
        settings = self.connector.settings
        self.MAX_SIZE_DEFAULT = settings.batch_size_rows
        #: Records per batch (the SDK's `max_size`, looked up once).
        self.batch_rows = self.max_size
        self._rows = RawRowBuilder(sync_id=self.sync_started_at)
        self.run = self.runs.streams.setdefault(self.stream_name, StreamRun())
        self._last_version: int | None = None
        #: Where the stream's tables go (SPEC §6.4).
        self.placement = settings.place(self.stream_name)
        self.load_method = settings.load_method_for(
            self.stream_name, has_keys=bool(self._key_properties)
        )
        #: Whether each load replaces the stream's table (full refresh).
        self.overwrite = self.load_method == "overwrite"
        self.final: FinalTarget | None = None
        self._caster = RowCaster([])
        #: The key properties, looked up once (the SDK's property conforms them per call).
        self.record_keys = list(self._key_properties)
        self._key_set = frozenset(self.record_keys)
        self._writer: BatchWriter | None = None
        self._connections: tuple[PgConnection, PgConnection] | None = None
        #: Input sequence number of the first record of the pending batch.
        self.first_pending_seq = 0
        #: The deletion-marker properties of the schema, when deletes remove rows.
        self._delete_markers: list[str] = []
        #: The final table (schema, name) when records go to a full refresh's side table.
        self.replaces: tuple[str, str] | None = None
        #: Why the last attempt to reconnect for a lost batch failed.
        self._last_failure: BaseException | None = None
        #: Decodes a record line straight into its values (`add_values`); set up by `setup`.
        self.record_fields: RecordFields | None = None
        #: Positions of the deletion markers among those values.
        self._marker_positions: list[int] = []

    @property
    def raw_schema(self) -> str:
        """Schema of the raw table."""
        return raw_identifier(self.connector.settings.raw_data_schema)

    def _remove_sdc_metadata_from_schema(self) -> None:
        """Keep every property the tap declared, `_sdc_*` ones included: `_sdc_deleted_at`
        marks deletes (SPEC §6.3), and the final table mirrors the tap's schema."""

    def get_validator(self) -> None:
        """Records are never rejected for failing JSON-schema validation (SPEC §4.4)."""
        return

    def _retrying(self, doing: str, step: Callable[[], T]) -> T:
        """Run a step of the stream's table work; when the connection is lost, run it again
        on a new one, up to `RETRY_DELAYS` more times (SPEC §9: every phase is retried). The
        steps are single transactions or idempotent, so a repeat cannot apply one twice."""
        attempt = 0
        while True:
            try:
                return step()
            except (psycopg.OperationalError, ConnectError) as error:
                if isinstance(error, psycopg.OperationalError) and not connection_lost(error):
                    raise
                if attempt == len(RETRY_DELAYS):
                    msg = (
                        f"Lost the connection to the database while {doing} stream"
                        f" {self.stream_name}, and {attempt} more attempts failed too (last"
                        f" error: {first_line(error)}). Every record before the last STATE this"
                        " run emitted is committed: run again from that state"
                    )
                    raise ConnectionLost(msg) from None
                delay = RETRY_DELAYS[attempt]
                attempt += 1
                self.logger.warning(
                    "Stream %s: lost the connection to the database while %s it (%s); trying"
                    " again in %s s",
                    self.stream_name,
                    doing,
                    first_line(error),
                    delay,
                )
                time.sleep(delay)

    def setup(self) -> None:
        """Prepare the stream's tables (`_setup`), again if the connection is lost."""
        self._retrying("setting up the tables of", self._setup)

    def _setup(self) -> None:
        """Create the raw table, create or evolve the final table (and, for a full refresh,
        the side table the load is built in), match its key index to the load method, and
        plan the casts."""
        connector = self.connector
        place = self.placement
        schema = place.final_schema
        typed = not connector.settings.disable_type_dedupe
        if typed:
            connector.check_schema(schema, self.stream_name)
        connector.lock_stream(self.stream_name, f"{self.raw_schema}.{place.raw_table}")
        self.raw_table = connector.prepare_raw_table(
            self.raw_schema, place.raw_table, self.stream_name, schema, place.table
        )
        self.record_fields = RecordFields([], frozenset(), self.record_keys)
        if not typed:
            return
        properties = self.schema.get("properties") or {}
        table, columns, vacated = connector.prepare_final_table(
            schema,
            place.final_table,
            self.stream_name,
            [
                (prop, final_identifier(prop), column_type(spec))
                for prop, spec in properties.items()
            ],
        )
        positions = {column.prop: index for index, column in enumerate(columns)}
        names = [column.name for column in columns]
        keys = [names[positions[key]] for key in self.record_keys if key in positions]
        if len(keys) != len(self.record_keys):
            self.logger.warning(
                "Stream %s: key properties %s are not all properties of its schema; its rows"
                " are appended without deduplication",
                self.stream_name,
                self.record_keys,
            )
            keys = []
        if self.load_method == "append":
            keys = []
        cursor = self._cursor_column(positions, names)
        key_types = (
            None
            if connector.nulls_not_distinct or not keys
            else [columns[positions[key]].catalog_type for key in self.record_keys]
        )
        connector.prepare_key_index(schema, table, keys, cursor, key_types)
        deleting = bool(keys) and connector.settings.cdc_deletion_mode == "hard_delete"
        self._delete_markers = (
            [marker for marker in DELETION_MARKERS if marker in positions] if deleting else []
        )
        non_finite = connector.server_version >= 140000
        plan: list[tuple[str, Cast, ColumnType | None]] = []
        for column in columns:
            column_kind = effective_type(column.wanted, column.catalog_type)
            plan.append(
                (column.prop, cast_for(column_kind, non_finite_numbers=non_finite), column_kind)
            )
        # Object and array columns take the JSON text of the line, unless a key or a deletion
        # marker (whose null must be told apart) is one.
        special = {
            positions[prop]
            for prop in [*self.record_keys, *self._delete_markers]
            if prop in positions
        }
        json_texts = frozenset(
            index
            for index, (_, _, kind) in enumerate(plan)
            if kind in JSON_TEXT_COLUMNS and index not in special
        )
        self._caster = RowCaster(plan, json_texts)
        self.record_fields = RecordFields(
            [column.prop for column in columns], json_texts, self.record_keys
        )
        self._marker_positions = [positions[marker] for marker in self._delete_markers]
        self.final = FinalTarget(
            schema=schema,
            table=table,
            columns=names,
            keys=keys,
            key_types=key_types,
            cursor=cursor,
            deleted=[(names[positions[marker]], marker) for marker in self._delete_markers],
            vacated=vacated,
        )
        if self.overwrite:
            self.replaces = (schema, table)
            self.final.table = derived_name(table, "load")
            if self.run.load_open:
                self._prepare_side(fresh=False)
            return
        if self._delete_markers:
            tombstones = (self.raw_schema, derived_name(self.raw_table, "deletes"))
            connector.prepare_companion(
                *tombstones, (schema, table), (DELETES_OF, self.stream_name), fresh=False
            )
            connector.prepare_key_index(*tombstones, keys, cursor, key_types)
            self.final.tombstones = tombstones
            self.final.has_tombstones = connector.has_rows(*tombstones)
        self._type_untyped_raw_rows()
        # Rows already there will meet the batch's keys: merge from the first batch on, so no
        # batch is written twice. Into an empty table the first batch tries a plain COPY.
        self.final.upsert_needed = bool(keys) and connector.has_rows(schema, table)

    def _type_untyped_raw_rows(self) -> None:
        """Type into the final table the raw rows an earlier run committed without typing them
        (`disable_type_dedupe`), oldest first, before this run's records (SPEC §9). Each chunk
        is written and marked typed in one transaction."""
        final, connector = self.final, self.connector
        if final is None:
            return
        raw = (self.raw_schema, self.raw_table)
        with connector.raw_connection() as conn:
            if conn.execute(sql.has_untyped(*raw)).fetchone() is None:
                return
        typed = 0
        held: list[str] = []
        last_id = ""
        while True:
            with connector.raw_connection() as conn:
                found = conn.execute(
                    sql.untyped_raw_rows(*raw), (last_id, self.MAX_SIZE_DEFAULT)
                ).fetchall()
                if not found:
                    break
                rows = []
                written = []
                deletes = False
                for raw_id, extracted_at, data_text, meta_text, generation_id in found:
                    data = json.loads(data_text, parse_float=Decimal)
                    values, changes = self._caster.row(data)
                    if self._key_set.intersection(change["field"] for change in changes):
                        # A key never becomes NULL by typing (SPEC §6.3): the row stays
                        # untyped in the raw table, and every run says so.
                        held.append(raw_id)
                        continue
                    written.append(raw_id)
                    if changes:
                        meta = json.loads(meta_text)
                        meta["changes"] = [*meta.get("changes", []), *changes]
                        meta_text = json.dumps(meta)
                    deletes = deletes or any(
                        data.get(marker) is not None for marker in self._delete_markers
                    )
                    rows.append([*values, raw_id, extracted_at, meta_text, generation_id])
                if rows:
                    write_typed(conn, final, rows, deletes=deletes)
                    conn.execute(sql.mark_typed(*raw), (written,))
            typed += len(written)
            last_id = found[-1][0]
        self.logger.info(
            "Stream %s: typed %s raw rows that an earlier run left untyped into %s.%s",
            self.stream_name,
            typed,
            final.schema,
            final.table,
        )
        if held:
            self.logger.warning(
                "Stream %s: %s untyped raw rows of %s.%s stay untyped because a key value of"
                " theirs cannot be stored in its key column (raw ids %s); correct them there"
                " or change the key column's type, and the next run types them",
                self.stream_name,
                len(held),
                *raw,
                ", ".join(held[:5]) + (", ..." if len(held) > 5 else ""),
            )

    def _cursor_column(self, positions: dict[str, int], names: list[str]) -> str | None:
        """The column of the stream's cursor: the first of its `bookmark_properties`."""
        bookmarks = self.runs.bookmarks.get(self.stream_name) or []
        if not bookmarks:
            return None
        cursor = bookmarks[0]
        if cursor not in positions:
            self.logger.warning(
                "Bookmark property %r of stream %s is not a top-level property; rows of a key"
                " are decided by extraction time and arrival",
                cursor,
                self.stream_name,
            )
            return None
        return names[positions[cursor]]

    def _prepare_side(self, *, fresh: bool, generation: int | None = None) -> None:
        """The table a full refresh's load is built in, beside the live table (SPEC §6.1).
        A new load (`fresh`) continues the one an earlier run left unfinished for the same
        table version (`generation`; None for records without one), if there is one, since
        that run's STATEs covered its records."""
        final, replaces, run = self.final, self.replaces, self.run
        if final is None or replaces is None:
            return
        side = (final.schema, final.table)
        if fresh:
            since = self.connector.open_load(
                side, replaces, (self.raw_schema, self.raw_table), self.stream_name, generation
            )
            fresh = since is None
            run.load_since = since or first_id_at(time.time_ns() // 1_000_000)
        self.connector.prepare_companion(
            *side, replaces, (LOAD_OF, self.stream_name), fresh=fresh, since=run.load_since
        )
        self.connector.prepare_key_index(*side, final.keys, final.cursor, final.key_types)
        final.upsert_needed = bool(final.keys) and not fresh and self.connector.has_rows(*side)
        run.load_open = True

    def add_record(
        self, record: dict[str, Any], message: dict[str, Any], *, maybe_dirty: bool = True
    ) -> None:
        """Stage one record of the current batch as its raw row and its final row.

        `maybe_dirty` False promises the record holds no NUL character and no NaN/Infinity
        (the reader saw none in the line), which skips the walk that would find them.
        """
        data, changes = clean_record(record) if maybe_dirty else (record, [])
        typed = None
        deletes = False
        if self.final is not None:
            typed = self._caster.row(data)
            if typed[1] and self._key_set:
                self._refuse_unstorable_key(typed[1], data.get)
            deletes = any(data.get(marker) is not None for marker in self._delete_markers)
        self._stage(
            data_json(data),
            changes,
            typed,
            deletes,
            message.get("time_extracted"),
            message.get("version"),
        )

    def add_values(
        self,
        values: tuple[Any, ...],
        record: msgspec.Raw,
        time_extracted: object,
        version: object,
        short: bool,
    ) -> None:
        """Stage one record that `record_fields` decoded from a clean line: its values in
        column order and its JSON text as received (`short`: the line had at most
        `casting.SHORT_LINE` characters). This is the hot path of a load."""
        typed = None
        deletes = False
        if self.final is not None:
            typed = self._caster.row_of_values(values, short)
            if typed[1] and self._key_set:
                self._refuse_unstorable_key(typed[1], json.loads(bytes(record)).get)
            for position in self._marker_positions:
                if values[position] is not None:
                    deletes = True
        self._stage(record, None, typed, deletes, time_extracted, version)

    def _refuse_unstorable_key(
        self, changes: list[dict[str, str]], value_of: Callable[[str], object]
    ) -> None:
        """A key never becomes NULL by typing (SPEC §6.3): distinct keys that failed their cast
        would merge into one row. Such a record is refused, before it is staged."""
        for change in changes:
            prop = change["field"]
            if prop in self._key_set:
                value = _json_text(value_of(prop))
                msg = (
                    f"record of stream {self.stream_name} has key property {prop} = {value},"
                    " which its key column cannot hold exactly (a key is never NULLed by"
                    " typing, or distinct keys would merge); fix the value at the source, or"
                    " change the key column's type"
                )
                raise KeyNotStorable(msg)

    def _stage(
        self,
        data_json: str | msgspec.Raw,
        changes: list[dict[str, str]] | None,
        typed: tuple[list[Any], list[dict[str, str]]] | None,
        deletes: bool,
        time_extracted: object,
        version: object,
    ) -> None:
        """Stage the raw row and the final row (`typed`: its values and the changes typing
        made) of one record."""
        self._batch_records_read += 1
        self._total_records_read += 1
        run = self.run
        run.received += 1
        if type(version) is int:
            generation_id = version
            run.versioned = True
        else:
            generation_id = run.active_version
        if generation_id != self._last_version:
            run.versions.add(generation_id)
            self._last_version = generation_id
        writer = self._writer or self._start_batch(generation_id if run.versioned else None)
        rows = self._rows
        raw_id, extracted_at = rows.id_and_time(time_extracted)
        meta_json = rows.meta_json(changes) if changes else rows.empty_meta
        raw_row = (raw_id, extracted_at, writer.loaded_at, data_json, meta_json, generation_id)
        if self.overwrite:
            run.load_records += 1
            if run.load_since is None:  # a raw-only full refresh has no side table
                run.load_since = raw_id
        if typed is None:
            writer.add(raw_row, None)
            return
        values, typing_changes = typed
        if typing_changes:
            run.nulled_rows += 1
            run.nulled_values += len(typing_changes)
            meta_json = rows.meta_json([*(changes or []), *typing_changes])
        if deletes:
            writer.saw_delete = True
        values += (raw_id, extracted_at, meta_json, generation_id)
        writer.add(raw_row, values)

    def _start_batch(self, generation: int | None) -> BatchWriter:
        if self.overwrite and not self.run.load_open:
            self._retrying(
                "starting a full refresh of",
                lambda: self._prepare_side(fresh=True, generation=generation),
            )
        if not self.run.started:
            self.run.started = self.run.reported = time.monotonic()
        pair = self.connector.acquire_stream_connections()
        if pair is None:
            msg = "no free connection for a new batch; the target drains a sink first"
            raise InternalError(msg)
        self._connections = pair
        self._writer = BatchWriter(pair[0], pair[1], self.raw_schema, self.raw_table, self.final)
        return self._writer

    def process_record(self, record: dict[str, Any], context: dict[str, Any]) -> None:
        """Stage a record that arrives without its message (SDK code paths)."""
        self.add_record(record, {})

    def activate_version(self, new_version: int) -> None:
        """Apply ACTIVATE_VERSION (SPEC §6.1), every record before it being committed: the
        stream's tables keep only rows of `new_version`. One that arrives before any record
        of its version waits for the next one, or for the end of input."""
        run = self.run
        run.active_version = new_version
        run.versioned = True
        ready = run.pending_version == new_version or (
            run.load_records > 0 if self.overwrite else new_version in run.versions
        )
        if not ready:
            run.pending_version = new_version
            self.logger.info(
                "ACTIVATE_VERSION %s of stream %s waits for a record of that version or the"
                " end of input, so the table is not emptied at the start of a reload",
                new_version,
                self.stream_name,
            )
            return
        run.pending_version = None
        if self.overwrite:
            self.finish_load()
            return
        tables = [(self.raw_schema, self.raw_table)]
        if self.final is not None:
            tables.append((self.final.schema, self.final.table))
            if self.final.tombstones is not None:
                tables.append(self.final.tombstones)
        removed = self._retrying(
            "applying ACTIVATE_VERSION to",
            lambda: self.connector.keep_generation(tables, new_version),
        )
        self.logger.info(
            "ACTIVATE_VERSION %s of stream %s applied: %s rows of other versions removed",
            new_version,
            self.stream_name,
            " and ".join(
                f"{count} {kind}" for count, kind in zip(removed, ("raw", "final"), strict=False)
            ),
        )

    def finish_load(self) -> None:
        """End a full refresh: the final table's contents become the load's, atomically, and
        raw rows of earlier loads go (SPEC §6.1). A load without records empties the table."""
        run = self.run
        if self.final is not None and not run.load_open:
            generation = run.active_version if run.versioned else None
            self._retrying(
                "starting a full refresh of",
                lambda: self._prepare_side(fresh=True, generation=generation),
            )
        side = (self.final.schema, self.final.table) if self.final is not None else None
        try:
            count = self._retrying(
                "ending the full refresh of",
                lambda: self.connector.replace_contents(
                    self.replaces, side, (self.raw_schema, self.raw_table), run.load_since
                ),
            )
        except psycopg.Error as error:
            where = ".".join(self.replaces or (self.raw_schema, self.raw_table))
            msg = (
                f"Could not end the full refresh of stream {self.stream_name}: replacing the"
                f" rows of {where} failed ({first_line(error)}). {where} is unchanged and the"
                " load is kept, so the next run continues it"
            )
            raise LoadNotReplaced(msg) from None
        self.logger.info(
            "Full refresh of stream %s done: %s now holds the %s rows of this load",
            self.stream_name,
            ".".join(self.replaces or (self.raw_schema, self.raw_table)),
            count,
        )
        run.load_open = False
        run.load_records = 0
        run.load_since = None
        run.loads_done += 1

    def finish_run(self) -> None:
        """At the end of input, with every record committed: end the open full refresh (or,
        if the run brought no load at all, an empty one) and apply an ACTIVATE_VERSION still
        waiting for its records."""
        run = self.run
        if self.overwrite:
            if run.load_open or not run.loads_done:
                self.finish_load()
            run.pending_version = None
            return
        pending = run.pending_version
        if pending is None:
            return
        if pending not in run.versions:
            self.logger.warning(
                "ACTIVATE_VERSION %s of stream %s is applied at the end of input although no"
                " record of that version arrived: the stream's tables are emptied",
                pending,
                self.stream_name,
            )
        run.pending_version = pending
        self.activate_version(pending)

    def process_batch(self, context: dict[str, Any]) -> None:
        """Commit the batch's rows in the raw and final tables."""
        writer, self._writer = self._writer, None
        if writer is None:
            return
        try:
            self._commit_with_retries(writer)
        finally:
            self._release_connections()
        self.run.committed += self.current_size
        self.record_counter_metric.increment(self.current_size)
        now = time.monotonic()
        if now - self.run.reported >= PROGRESS_EVERY:
            self.run.reported = now
            self.logger.info("%s", self.progress(now))

    def _commit_with_retries(self, writer: BatchWriter) -> None:
        """Commit a batch; if a connection is lost, send the batch again on new connections,
        up to `RETRY_DELAYS` more times, then stop with one clear sentence (SPEC §9)."""
        for delay in (*RETRY_DELAYS, None):
            try:
                writer.commit()
            except psycopg.OperationalError as error:
                lost = writer.connection_lost
                writer.abort()
                self._release_connections()
                if not lost:
                    raise
                if delay is None:
                    raise ConnectionLost(self._lost_message(self._last_failure or error)) from None
                self.logger.warning(
                    "Stream %s: lost the connection to the database while writing a batch of"
                    " %s records (%s); sending the batch again in %s s",
                    self.stream_name,
                    len(writer.raw_rows),
                    first_line(error),
                    delay,
                )
                time.sleep(delay)
                writer = self._replay(writer, error)
            except BaseException:
                writer.abort()
                raise
            else:
                return

    def _replay(self, writer: BatchWriter, error: psycopg.OperationalError) -> BatchWriter:
        """The batch on new connections; a failed connect counts as another lost attempt."""
        try:
            pair = self.connector.acquire_stream_connections()
        except (psycopg.OperationalError, TargetError) as connect_error:
            writer.lost = writer.lost or error
            self._last_failure = connect_error
            self.logger.warning(
                "Stream %s: could not reconnect (%s)", self.stream_name, first_line(connect_error)
            )
            return writer
        if pair is None:  # pragma: no cover - the sink's own pair was just handed back
            msg = "no free connection to retry a batch"
            raise InternalError(msg)
        self._connections = pair
        self._last_failure = None
        return writer.replay(*pair)

    def _lost_message(self, error: BaseException) -> str:
        return (
            f"Lost the connection to the database while writing stream {self.stream_name}, and"
            f" {len(RETRY_DELAYS)} more attempts failed too (last error: {first_line(error)})."
            " Every record before the last STATE this run emitted is committed: run again from"
            " that state"
        )

    def _tables(self) -> str:
        """Where the stream's rows go, for log lines."""
        raw = f"{self.raw_schema}.{self.raw_table}"
        if self.final is None:
            return f"raw table {raw}"
        final = ".".join(self.replaces or (self.final.schema, self.final.table))
        return f"{final} (raw table {raw})"

    def progress(self, now: float) -> str:
        """One line on how far the stream has got."""
        run = self.run
        elapsed = max(now - run.started, 1e-9) if run.started else 0.0
        rate = run.committed / elapsed if elapsed else 0.0
        return (
            f"Stream {self.stream_name}: {run.received:,} records received,"
            f" {run.committed:,} committed to {self._tables()}, {rate:,.0f} records/s;"
            f" {run.nulled_values:,} values NULLed by typing in {run.nulled_rows:,} rows"
        )

    def summary(self) -> str:
        """The stream's closing line: records, typing errors, time."""
        run = self.run
        elapsed = time.monotonic() - run.started if run.started else 0.0
        return (
            f"Stream {self.stream_name} done: {run.committed:,} records committed to"
            f" {self._tables()} in {elapsed:,.1f} s;"
            f" {run.nulled_values:,} values NULLed by typing in {run.nulled_rows:,} rows"
            " (see _airbyte_meta)"
        )

    def _release_connections(self) -> None:
        if self._connections is not None:
            self.connector.release_stream_connections(self._connections)
            self._connections = None

    def clean_up(self) -> None:
        """Roll back a batch that was never drained (the run is failing) and hand back the
        connections."""
        if self._writer is not None:
            self._writer.abort()
            self._writer = None
        self._release_connections()
        super().clean_up()
