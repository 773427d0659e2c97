"""Sinks stage one stream's records in batches and commit them: each record arrives decoded by
the stream's plan (`plan.StreamPlan`, made by its table layout from the SCHEMA message), is
streamed into the batch's tables by a `loading.BatchWriter` as it is staged, and the batch is
committed when full, before a STATE can follow it (SPEC §9)."""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg
from singer_sdk.sql import SQLSink

from target_postgres_hp import retry
from target_postgres_hp.connector import PostgresConnector
from target_postgres_hp.decode import Decoded
from target_postgres_hp.errors import InternalError, RecordNotStored
from target_postgres_hp.layouts import layout_for
from target_postgres_hp.loading import BatchWriter, KeptData, PgConnection, refuses_data
from target_postgres_hp.loads import LOAD_METHODS, full_refresh_of
from target_postgres_hp.plan import Planning, StreamPlan, StreamSchema
from target_postgres_hp.rawdata import RawRowBuilder
from target_postgres_hp.runs import KeepsRuns, StreamRun

if TYPE_CHECKING:
    from singer_sdk import Target

T = TypeVar("T")

#: Seconds between two progress lines of a stream.
PROGRESS_EVERY = 15.0


class PostgresSink(SQLSink[PostgresConnector]):
    """Stages a stream's records and commits them, batch by batch, as its plan says."""

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
        self._target = target
        settings = self.connector.settings
        self.MAX_SIZE_DEFAULT = settings.batch_size_rows
        #: Records per batch (the SDK's `max_size`, looked up once).
        self.batch_rows = self.max_size
        self._rows = RawRowBuilder(sync_id=self.sync_started_at)
        self.run = target.runs.streams.setdefault(self.stream_name, StreamRun())
        self._last_version: int | None = None
        #: The key properties, looked up once (the SDK's property conforms them per call).
        self.record_keys = list(self._key_properties)
        self.load = LOAD_METHODS[
            settings.load_method_for(self.stream_name, has_keys=bool(self.record_keys))
        ]
        if self.run.versioned and self._versions_count:
            self.load = full_refresh_of(self.load)
        self._counts_load = self.load.replaces
        self.plan: StreamPlan
        self._writer: BatchWriter | None = None
        #: The buffers of the current batch's COPY data (`StreamingPairs.buffers`).
        self._kept: tuple[KeptData, KeptData] | None = None
        self._connections: tuple[PgConnection, PgConnection] | None = None
        #: Input sequence number of the first record of the pending batch, and when it came
        #: (`time.monotonic()`).
        self.first_pending_seq = 0
        self.pending_since = 0.0
        #: A batch the database refused, or one rolled back because another was
        #: (`set_aside`): what `commit_before` takes records from.
        self._set_aside: BatchWriter | None = None

    def _remove_sdc_metadata_from_schema(self) -> None:
        """Keep every property the tap declared, `_sdc_*` ones included: `_sdc_deleted_at`
        marks deletes (SPEC §6.3), and the final table mirrors the tap's schema."""

    def get_validator(self) -> None:
        """Records are never rejected for failing JSON-schema validation (SPEC §4.4)."""
        return

    def retrying(self, doing: str, step: Callable[[], T]) -> T:
        """Run a step of the stream's table work under the retry policy (`retry.retrying`)."""
        return retry.retrying(step, stream=self.stream_name, doing=doing, logger=self.logger)

    def setup(self) -> None:
        """Plan the stream: its layout readies its tables (again if the connection is lost)."""
        schema = StreamSchema(
            stream=self.stream_name,
            properties=self.schema.get("properties") or {},
            keys=self.record_keys,
            bookmarks=self._target.runs.bookmarks.get(self.stream_name) or [],
        )
        layout = layout_for(self.connector.settings)
        place = self.connector.settings.place(self.stream_name)
        self.plan = self.retrying(
            "setting up the tables of",
            lambda: layout.plan(
                Planning(schema, place, self.load, self.connector, self.run, self.logger)
            ),
        )
        self._writes_raw = self.plan.raw is not None

    def add(
        self, decoded: Decoded, time_extracted: object, version: object, seq: int, line: int
    ) -> bool:
        """Stage one record the stream's decoder read (`seq`: its place in the input, `line`:
        its input line); True when the batch is full. This is the hot path of a load."""
        data_json, changes, typed, deletes = decoded
        run = self.run
        if type(version) is int:
            generation_id = version
            if not run.versioned:
                self._become_versioned()
        else:
            generation_id = run.active_version
        if generation_id != self._last_version:
            run.versions.add(generation_id)
            self._last_version = generation_id
        writer = self._writer or self._start_batch(seq, generation_id if run.versioned else None)
        self._batch_records_read += 1
        self._total_records_read += 1
        writer.lines.append(line)
        run.received += 1
        rows = self._rows
        raw_id = rows.next_id()
        if time_extracted is not None and time_extracted == rows.text_of:
            extracted_at = rows.last_text  # the common case, without a call
        else:
            extracted_at = rows.extracted_text(time_extracted)
        meta_json = rows.meta_json(changes) if changes else rows.empty_meta
        raw_row = (
            (raw_id, extracted_at, writer.loaded_at, data_json, meta_json, generation_id)
            if self._writes_raw
            else None
        )
        if self._counts_load:
            self.load.staged(run, raw_id)
        if typed is None:
            writer.add(raw_row, None)
        else:
            values, typing_changes = typed
            if typing_changes:
                run.nulled_rows += 1
                run.nulled_values += len(typing_changes)
                meta_json = rows.meta_json([*(changes or []), *typing_changes])
            if deletes:
                writer.saw_delete = True
            values += (raw_id, extracted_at, meta_json, generation_id)
            writer.add(raw_row, values)
        return self._batch_records_read >= self.batch_rows

    def _start_batch(self, seq: int, generation: int | None) -> BatchWriter:
        """A batch for the record `seq` (of table version `generation`) on a pair of
        connections; when every pair is taken, the target commits another stream's batch."""
        self.first_pending_seq = seq
        self.pending_since = time.monotonic()
        if not self.connector.streaming.slots_left:
            self._target.make_room()
        self.load.before_batch(self, generation)
        if not self.run.started:
            self.run.started = self.run.reported = time.monotonic()
        # A pool's connection found dead at checkout is opened again, and opening one can
        # fail while the server or a pooler restarts: retried like any lost connection.
        pair = self.retrying("starting a batch of", self.connector.streaming.acquire)
        if pair is None:
            msg = "no free connection for a new batch; the target drains a sink first"
            raise InternalError(msg)
        self._connections = pair
        self._kept = self.connector.streaming.buffers()
        self._writer = BatchWriter(*pair, self.plan.raw, self.plan.final, self._kept)
        return self._writer

    @property
    def _versions_count(self) -> bool:
        """Whether table versions make the stream a full refresh: unless ACTIVATE_VERSION
        messages are ignored (`process_activate_version_messages: false`)."""
        return bool(self.process_activate_version_messages)

    def _become_versioned(self) -> None:
        """The stream's first table version (a versioned record, or ACTIVATE_VERSION): it is
        a full refresh from now on whatever its load method (SPEC §6.1). Records staged
        before, without a version, are committed to the live table first; the load that
        begins now replaces them with the rest when it ends (docs/loading.md)."""
        run = self.run
        run.versioned = True
        if self.load.replaces or not self._versions_count:
            return
        if self._writer is not None:
            self._target.drain_one(self)
        self.load = full_refresh_of(self.load)
        self._counts_load = True
        self.logger.info(
            "Stream %s receives table versions: it is loaded as a full refresh from now on,"
            " built beside %s and swapped in when its ACTIVATE_VERSION or the end of input"
            " comes",
            self.stream_name,
            self.plan.describe(),
        )
        final = self.plan.final
        if final is not None:
            # Removed keys of the incremental loads do not judge the records of a version.
            final.tombstones, final.has_tombstones = None, False
        self.load.prepare_final(self.plan, self.connector, run, lambda: None)

    def activate_version(self, new_version: int) -> None:
        """Apply ACTIVATE_VERSION (SPEC §6.1), every record before it being committed: the
        stream's tables keep only rows of `new_version`. One that arrives before any record
        of its version waits for the next one, or for the end of input."""
        run = self.run
        run.active_version = new_version
        if not run.versioned:
            self._become_versioned()
        ready = run.pending_version == new_version or self.load.version_ready(run, new_version)
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
        self.load.apply_version(self, new_version)

    def finish_run(self) -> None:
        """At the end of input, with every record committed: what the load method does then
        (end a full refresh; apply an ACTIVATE_VERSION still waiting for its records)."""

        def activate(version: int) -> None:
            self.run.pending_version = version
            self.activate_version(version)

        self.load.finish_run(self, activate)

    def process_batch(self, context: dict[str, Any]) -> None:
        """Commit the batch's rows."""
        writer, self._writer = self._writer, None
        if writer is None:
            return
        try:
            self._commit(writer)
        finally:
            self._release_connections()
            if self._kept is not None and self._set_aside is None:
                self.connector.streaming.give_back(self._kept)
                self._kept = None
        self.run.committed += self.current_size
        self.record_counter_metric.increment(self.current_size)
        now = time.monotonic()
        if now - self.run.reported >= PROGRESS_EVERY:
            self.run.reported = now
            self.logger.info("%s", self.progress(now))

    def _commit(self, writer: BatchWriter) -> None:
        """Commit a batch; after a failed attempt, send it again on new connections."""
        current, failed_before = writer, False

        def attempt() -> None:
            nonlocal current, failed_before
            if failed_before:
                pair = self.connector.streaming.acquire()
                if pair is None:  # pragma: no cover - the sink's own pair was handed back
                    msg = "no free connection to retry a batch"
                    raise InternalError(msg)
                self._connections = pair
                current, failed_before = current.replay(*pair), False
            current.commit()

        def failed(error: BaseException) -> None:
            nonlocal failed_before
            current.abort()
            self._release_connections()
            failed_before = True

        try:
            retry.retrying(
                attempt,
                stream=self.stream_name,
                doing="writing",
                step_name=f"writing a batch of {writer.records} records",
                logger=self.logger,
                after_failure=failed,
            )
        except psycopg.Error as error:
            # A batch whose final part is committed (a retry after the final commit) has no
            # records to take back: it fails as it is.
            if not refuses_data(error) or (current.final is None and self.plan.final is not None):
                raise
            refusal = self.first_refused(current, current.records)
            if refusal is None:
                raise
            self._set_aside = current
            raise refusal from None

    def _pair(self) -> tuple[PgConnection, PgConnection]:
        pair = self.connector.streaming.acquire()
        if pair is None:  # pragma: no cover - batches were set aside, their pairs handed back
            msg = "no free connection to look for a refused record"
            raise InternalError(msg)
        self._connections = pair
        return pair

    def set_aside(self) -> None:
        """Roll back the pending batch and keep its data, because the database refused a
        record (of this stream or another): `commit_before` commits what came before it."""
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.abort()
            self._set_aside = writer
        self._release_connections()

    def first_refused(self, writer: BatchWriter, count: int) -> RecordNotStored | None:
        """The first of the batch's first `count` records that the database refuses, found
        on new connections by halves (each trial rolled back), or None when it takes them
        all (SPEC §9). Only a refused batch is searched: the fast path is untouched."""
        error = self._trial(writer, count)
        if error is None:
            return None
        good, bad = 0, count
        while bad - good > 1:
            middle = (good + bad) // 2
            found = self._trial(writer, middle)
            if found is None:
                good = middle
            else:
                bad, error = middle, found
        diag = error.diag
        reason = f"{diag.message_primary or type(error).__name__}, SQLSTATE {error.sqlstate}"
        return RecordNotStored(self.stream_name, writer.lines[bad - 1], reason)

    def _trial(self, writer: BatchWriter, count: int) -> psycopg.Error | None:
        """Write the batch's first `count` records and roll back: the database's refusal, or
        None."""

        def attempt() -> psycopg.Error | None:
            trial = None
            try:
                trial = writer.first(count, *self._pair())
                trial.write_out()
            except psycopg.Error as error:
                if refuses_data(error):
                    return error
                raise
            finally:
                if trial is not None:
                    trial.abort()
                self._release_connections()
            return None

        return self.retrying("looking for the record the database refuses in", attempt)

    def first_refused_before(self, line: int) -> RecordNotStored | None:
        """The first record of the set-aside batch, of a line before `line`, that the
        database refuses."""
        writer = self._set_aside
        if writer is None or (writer.final is None and self.plan.final is not None):
            return None
        count = bisect_left(writer.lines, line)
        return self.first_refused(writer, count) if count else None

    def commit_before(self, line: int) -> None:
        """Commit the records of the set-aside batch that came before input line `line`; the
        others are given up."""
        writer, self._set_aside = self._set_aside, None
        if writer is None:
            return
        count = bisect_left(writer.lines, line)
        if count and not (writer.final is None and self.plan.final is not None):
            self._commit(writer.first(count, *self._pair()))
            self._release_connections()
            self.run.committed += count

    def progress(self, now: float) -> str:
        """One line on how far the stream has got."""
        run = self.run
        elapsed = max(now - run.started, 1e-9) if run.started else 0.0
        rate = run.committed / elapsed if elapsed else 0.0
        return (
            f"Stream {self.stream_name}: {run.received:,} records received,"
            f" {run.committed:,} committed to {self.plan.describe()}, {rate:,.0f} records/s;"
            f" {run.nulled_values:,} values NULLed by typing in {run.nulled_rows:,} rows"
        )

    def summary(self) -> str:
        """The stream's closing line: records, typing errors, time."""
        run = self.run
        elapsed = time.monotonic() - run.started if run.started else 0.0
        return (
            f"Stream {self.stream_name} done: {run.committed:,} records committed to"
            f" {self.plan.describe()} in {elapsed:,.1f} s;"
            f" {run.nulled_values:,} values NULLed by typing in {run.nulled_rows:,} rows"
            " (see _airbyte_meta)"
        )

    def _release_connections(self) -> None:
        if self._connections is not None:
            self.connector.streaming.release(self._connections)
            self._connections = None

    def clean_up(self) -> None:
        """Roll back a batch that was never drained (the run is failing) and hand back the
        connections."""
        if self._writer is not None:
            self._writer.abort()
            self._writer = None
        self._release_connections()
        super().clean_up()
