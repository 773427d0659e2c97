"""Messages to sinks: each RECORD to its stream's sink in arrival order (the fast way straight
from the reader, or through stream maps), BATCH files as the RECORD lines they hold, and each
STATE emitted only once every record before it is committed (SPEC §9). The target
(`target.TargetPostgresHP`) adds the settings, the connection and the stream lifecycle."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from singer_sdk.mapper import SameRecordTransform
from singer_sdk.sql import SQLTarget

from target_postgres_hp.batch import Manifest
from target_postgres_hp.casting import SHORT_LINE
from target_postgres_hp.decode import Decoded
from target_postgres_hp.errors import BadInput
from target_postgres_hp.messages import before_schema, stream_message_problem
from target_postgres_hp.reader import LineReader, state_value_text
from target_postgres_hp.runs import RunRegistry
from target_postgres_hp.sinks import PostgresSink
from target_postgres_hp.state import StateKeeper, holds_of


class MessageRouter(SQLTarget):
    """Routes messages to `sinks.PostgresSink`s, one per stream."""

    message_reader_class = LineReader
    _runs: RunRegistry | None = None
    _states: StateKeeper | None = None
    #: Records read so far: the sequence number of the latest.
    _record_seq = 0

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

        def fast_record(message: Any, line: str | bytes) -> bool:
            record = message.record
            if record is None:
                return False
            decoded = from_record(record, len(line) <= SHORT_LINE)
            if decoded is None:
                return False
            seq = self._record_seq = self._record_seq + 1
            if add(decoded, message.time_extracted, message.version, seq):
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

    def _process_batch_message(self, message_dict: dict[str, Any]) -> None:
        """Load a BATCH's records exactly as the same RECORD lines would load, in order with
        the messages around it (SPEC §9). Every file is read and checked whole before any
        record is staged, so a bad file stops the run with no record of the BATCH staged."""
        problem = stream_message_problem("BATCH", message_dict, self.mapper.stream_maps)
        if problem is not None:
            raise self._bad_input(problem)
        stream_name: str = message_dict["stream"]
        manifest = Manifest.from_message(message_dict, stream_name, self.reader.line_number)
        manifest.check(self.mapper.stream_maps[stream_name][0].raw_key_properties or [])
        envelope = {"type": "RECORD", "stream": stream_name}
        if "version" in message_dict:
            envelope["version"] = message_dict["version"]
        # Records from files may hold NUL characters or NaN/Infinity: clean them all.
        self.reader.maybe_dirty = True
        for record in manifest.records():
            self._process_record_message({**envelope, "record": record})

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

    def _emit_safe_state(self) -> None:
        """Emit the latest state if no record received before it is still uncommitted."""
        self.states.emit_if_safe(sink.first_pending_seq for sink in self._pending_sinks())

    def _write_state_message(self, state: Any) -> None:
        """The SDK's call once every sink is drained: emit the latest state if it is safe
        (a full refresh before it may not have replaced its table yet), else nothing."""
        _ = state
        self._emit_safe_state()
