"""Messages to sinks: each RECORD to its stream's sink in arrival order (the fast way straight
from the reader, or through stream maps), BATCH files as the RECORD lines they hold, and each
STATE emitted only once every record before it is committed (SPEC §9). The target
(`target.TargetPostgresHP`) adds the settings, the connection and the stream lifecycle."""

from __future__ import annotations

import copy
import time
from bisect import bisect_left
from collections.abc import Callable
from typing import Any

from singer_sdk.mapper import SameRecordTransform
from singer_sdk.sql import SQLTarget

from target_postgres_hp.batch import Manifest
from target_postgres_hp.batchfiles import BatchFiles
from target_postgres_hp.casting import SHORT_LINE
from target_postgres_hp.decode import Decoded
from target_postgres_hp.errors import BadInput, RecordNotStored
from target_postgres_hp.messages import before_schema, stream_message_problem
from target_postgres_hp.reader import LineReader, state_value_text
from target_postgres_hp.runs import RunRegistry
from target_postgres_hp.sinks import PostgresSink
from target_postgres_hp.state import StateKeeper, holds_of

#: At most this much STATE text is kept for a refused record (`MessageRouter.keep_before`); past
#: it the oldest go first, and a refused record then falls back to the last STATE emitted
#: (safe: the records after it are sent again).
STATES_KEPT_CHARS = 64 << 20


class MessageRouter(SQLTarget):
    """Routes messages to `sinks.PostgresSink`s, one per stream."""

    message_reader_class = LineReader
    _runs: RunRegistry | None = None
    _states: StateKeeper | None = None
    #: Records read so far: the sequence number of the latest.
    _record_seq = 0
    #: The most seconds a staged record waits for its commit (`batch_wait_limit_seconds`).
    wait_limit: float = 30.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reader.deadlines = self

    #: The STATEs a refused record may have to fall back to (`keep_before`): (input line,
    #: records before it, text) of the last one every record before which is committed, and
    #: of every later one.
    _states_since: list[tuple[int, int, str]] | None = None
    _states_chars = 0

    @property
    def runs(self) -> RunRegistry:
        """What the run knows of its streams across their sinks."""
        if self._runs is None:
            self._runs = RunRegistry()
        return self._runs

    @property
    def states(self) -> StateKeeper:
        """The latest STATE, emitted once what came before it is committed."""
        if self._states is None:
            self._states = StateKeeper()
        return self._states

    @property
    def reader(self) -> LineReader:
        """The message reader, which knows the current line number."""
        reader = self.message_reader
        if not isinstance(reader, LineReader):
            msg = "this target reads with its LineReader"
            raise TypeError(msg)
        return reader

    def _bad_input(self, problem: str) -> BadInput:
        return BadInput(self.reader.line_number, problem)

    def _record_before_schema(self, stream_name: object) -> BadInput:
        return self._bad_input(before_schema("RECORD", stream_name))

    def _route_records(self, stream_name: str) -> None:
        """Let the reader hand the stream's clean RECORD lines straight to `_fast_record`
        when no stream map changes its records."""
        routes = self.reader.fast_routes
        routes.remove(stream_name)
        stream_maps = self.mapper.stream_maps.get(stream_name) or []
        if len(stream_maps) != 1:
            return
        stream_map = stream_maps[0]
        if type(stream_map) is not SameRecordTransform or stream_map.flattening_enabled:
            return
        sink = self._sinks_active.get(stream_map.stream_alias)
        if isinstance(sink, PostgresSink):
            decoder = sink.plan.decoder
            lenient = decoder.lenient
            routes.add(
                stream_name,
                decoder.record_type,
                self._fast_record(sink, decoder.from_record),
                self._fast_record(sink, decoder.from_text),
                None if lenient is None else (lenient[0], self._fast_record(sink, lenient[1])),
            )

    def _fast_record(
        self, sink: PostgresSink, from_record: Callable[[Any, bool], Decoded | None]
    ) -> Callable[[Any, str | bytes], bool]:
        """The handler of a stream's RECORD lines that msgspec read (`records.FastRoutes`),
        bound to the stream's sink and to the decoder's way in for what the line's record
        was read into: the reader calls it once per record. It returns False to leave the
        line to the slow way, which says what is wrong with it. A new sink comes only with a
        SCHEMA message, which routes the stream again."""
        add = sink.add
        reader = self.reader

        def fast_record(message: Any, line: str | bytes) -> bool:
            record = message.record
            if record is None:
                return False
            decoded = from_record(record, len(line) <= SHORT_LINE)
            if decoded is None:
                return False
            seq = self._record_seq = self._record_seq + 1
            if add(decoded, message.time_extracted, message.version, seq, reader.line_number):
                self.drain_one(sink)
                self._emit_safe_state()
            if not seq & 1023:
                self._handle_max_record_age()
            return True

        return fast_record

    def make_room(self) -> None:
        """Commit the batch that has waited longest, to free its connections for a new one."""
        pending = self._pending_sinks()
        if pending:
            self.drain_one(min(pending, key=lambda sink: sink.first_pending_seq))
            self._emit_safe_state()

    def due(self) -> float | None:
        """When the batch that waited longest must be committed: `wait_limit` after its
        first record came (SPEC §12), or None while nothing is staged."""
        oldest = min((sink.pending_since for sink in self._pending_sinks()), default=None)
        return None if oldest is None else oldest + self.wait_limit

    def commit_due(self) -> None:
        """Commit every batch whose first record has waited about `wait_limit` (or will
        within a tenth of it: one wake-up commits batches that came close together), then
        emit the STATE that covers them, so a slow tap's records are visible and its STATE
        out within the limit, and no transaction stays open while the input is silent."""
        soon = time.monotonic() + self.wait_limit / 10 - self.wait_limit
        for sink in sorted(self._pending_sinks(), key=lambda sink: sink.first_pending_seq):
            if sink.pending_since <= soon:
                self.drain_one(sink)
        self._emit_safe_state()

    def _process_batch_message(self, message_dict: dict[str, Any]) -> None:
        """Load a BATCH's records exactly as the same RECORD lines would load, in order with
        the messages around it (SPEC §9). Every file is read and checked whole before any
        record is staged, so a bad file stops the run with no record of the BATCH staged."""
        problem = stream_message_problem("BATCH", message_dict, self.mapper.stream_maps)
        if problem is not None:
            raise self._bad_input(problem)
        stream_name: str = message_dict["stream"]
        manifest = Manifest.from_message(
            message_dict, stream_name, self.reader.line_number, self.batch_files()
        )
        manifest.check(self.mapper.stream_maps[stream_name][0].raw_key_properties or [])
        envelope = {"type": "RECORD", "stream": stream_name}
        if "version" in message_dict:
            envelope["version"] = message_dict["version"]
        # Records from files may hold NUL characters or NaN/Infinity: clean them all.
        self.reader.maybe_dirty = True
        for record in manifest.records():
            self._process_record_message({**envelope, "record": record})

    def batch_files(self) -> BatchFiles:
        """Which files BATCH manifests may name: the target knows from its settings."""
        raise NotImplementedError

    def _process_record_message(self, message_dict: dict[str, Any]) -> None:
        """Hand a RECORD to its sink with the message around it (time_extracted, version).

        Unlike the SDK's default this neither validates the record against its JSON schema
        nor converts date-time strings: the raw table keeps the record as received.
        """
        stream_name = message_dict.get("stream")
        record = message_dict.get("record")
        if not isinstance(record, dict):
            raise self._bad_input(f"RECORD message for stream {stream_name} has no record object")
        if stream_name not in self.mapper.stream_maps:
            raise self._record_before_schema(stream_name)
        maybe_dirty = self.reader.maybe_dirty
        line_number = self.reader.line_number
        self._record_seq += 1
        for stream_map in self.mapper.stream_maps[stream_name]:
            mapped: dict[str, Any] | None = record
            if type(stream_map) is not SameRecordTransform or stream_map.flattening_enabled:
                mapped = stream_map.transform(copy.copy(record))
            if mapped is None:
                continue
            sink = self._sinks_active.get(stream_map.stream_alias)
            if not isinstance(sink, PostgresSink):
                raise self._record_before_schema(stream_map.stream_alias)
            decoded = sink.plan.decoder.from_dict(mapped, maybe_dirty=maybe_dirty)
            if sink.add(
                decoded,
                message_dict.get("time_extracted"),
                message_dict.get("version"),
                self._record_seq,
                line_number,
            ):
                self.drain_one(sink)
                self._emit_safe_state()
        self._handle_max_record_age()

    def _pending_sinks(self) -> list[PostgresSink]:
        """The sinks holding records not yet committed, retired ones included."""
        return [
            sink
            for sink in [*self._sinks_active.values(), *self._sinks_to_clear]
            if isinstance(sink, PostgresSink) and sink.current_size
        ]

    def _process_state_message(self, message_dict: dict[str, Any]) -> None:
        """Keep the state exactly as written; emit it once every record before it is
        committed."""
        if "value" not in message_dict:
            raise self._bad_input("STATE message without a value")
        text = state_value_text(self.reader.current_line)
        self._latest_state = text  # type: ignore[assignment]
        self.states.received(text, self._record_seq, holds_of(self.runs.streams.values()))
        self._emit_safe_state()
        self._keep_state(text)

    def _keep_state(self, text: str) -> None:
        """Remember a STATE for `keep_before`, forgetting those a later one covers."""
        if self._states_since is None:
            self._states_since = []
        kept = self._states_since
        kept.append((self.reader.line_number, self._record_seq, text))
        self._states_chars += len(text)
        oldest = min(
            (sink.first_pending_seq for sink in self._pending_sinks()),
            default=self._record_seq + 1,
        )
        covered = bisect_left(kept, oldest, key=lambda state: state[1])
        # Of the STATEs every record before which is committed, only the last can be wanted.
        forget = max(covered - 1, 0)
        dropped = sum(len(state[2]) for state in kept[:forget])
        while self._states_chars - dropped > STATES_KEPT_CHARS and forget < len(kept) - 1:
            dropped += len(kept[forget][2])
            forget += 1
        self._states_chars -= dropped
        del kept[:forget]

    def keep_before(self, refusal: RecordNotStored) -> RecordNotStored:
        """The database refused a record (SPEC §9): commit every record of the lines before
        the first record it refuses, in every stream (a refused batch never takes records of
        earlier lines with it), give up the others, and emit the last STATE before that
        line. Returns the refusal of that first record."""
        sinks = sorted(self._pending_sinks(), key=lambda sink: sink.first_pending_seq)
        for sink in sinks:
            sink.set_aside()
        for sink in sinks:
            if sink.stream_name != refusal.stream:
                earlier = sink.first_refused_before(refusal.line_number)
                if earlier is not None:
                    refusal = earlier
        for sink in sinks:
            sink.commit_before(refusal.line_number)
        before = [text for line, _, text in self._states_since or [] if line < refusal.line_number]
        # A full refresh without table versions that holds records is never swapped in now,
        # and the next run discards it: no STATE may promise its records (SPEC §6.1).
        discarded = any(
            run.load_records and not run.versioned for run in self.runs.streams.values()
        )
        if before and not discarded:
            self.states.write(before[-1])
        return refusal

    def _emit_safe_state(self) -> None:
        """Emit the latest state if no record received before it is still uncommitted."""
        self.states.emit_if_safe(sink.first_pending_seq for sink in self._pending_sinks())

    def _write_state_message(self, state: Any) -> None:
        """The SDK's call once every sink is drained: emit the latest state if it is safe
        (a full refresh before it may not have replaced its table yet), else nothing."""
        _ = state
        self._emit_safe_state()
