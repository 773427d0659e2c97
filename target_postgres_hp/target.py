"""target-postgres-hp: the Singer target that declares settings and capabilities and hands each
stream's records to its sink."""

from __future__ import annotations

import copy
import gc
import json
import os
import sys
from functools import partial
from typing import Any, ClassVar

import click
import psycopg
from singer_sdk.helpers.capabilities import (
    ACTIVATE_VERSION_CONFIG,
    FLATTENING_CONFIG,
    STREAM_MAPS_CONFIG,
    CapabilitiesEnum,
    PluginCapabilities,
    TargetCapabilities,
)
from singer_sdk.mapper import SameRecordTransform
from singer_sdk.plugin_base import _ConfigInput
from singer_sdk.sql import SQLTarget

from target_postgres_hp.batch import Manifest
from target_postgres_hp.casting import SHORT_LINE
from target_postgres_hp.config import (
    CONFIG_SCHEMA,
    Settings,
    read_config_file,
    unknown_environment_settings,
)
from target_postgres_hp.connector import PostgresConnector
from target_postgres_hp.errors import (
    BadInput,
    ConfigError,
    PermissionMissing,
    TargetError,
    first_line,
)
from target_postgres_hp.reader import LineReader, state_value_text
from target_postgres_hp.records import Envelope
from target_postgres_hp.runs import RunRegistry
from target_postgres_hp.sinks import PostgresSink


class TargetPostgresHP(SQLTarget):
    """Singer target for PostgreSQL: raw tables plus typed, deduplicated final tables."""

    name = "target-postgres-hp"
    package_name = "target-postgres-hp"
    config_jsonschema: ClassVar[dict[str, Any]] = CONFIG_SCHEMA
    default_sink_class = PostgresSink
    capabilities: ClassVar[list[CapabilitiesEnum]] = [
        PluginCapabilities.ABOUT,
        PluginCapabilities.STREAM_MAPS,
        PluginCapabilities.FLATTENING,
        PluginCapabilities.STRUCTURED_LOGGING,
        PluginCapabilities.ACTIVATE_VERSION,
        PluginCapabilities.BATCH,
        TargetCapabilities.TARGET_SCHEMA,
    ]

    message_reader_class = LineReader

    settings: Settings
    _target_connector: PostgresConnector | None = None
    _runs: RunRegistry | None = None
    _record_seq = 0
    _state_seq = 0
    _emitted_state: str | None = None

    @classmethod
    def append_builtin_config(cls, config_jsonschema: dict[str, Any]) -> None:
        """Add the SDK's settings for the capabilities declared above, and no others (the
        SDK's record validation, _sdc metadata and hard_delete switches do not apply, nor
        does batch_config, which says where a tap writes batch files: this target reads the
        files each BATCH names)."""
        for builtin in (STREAM_MAPS_CONFIG, FLATTENING_CONFIG, ACTIVATE_VERSION_CONFIG):
            for key, value in builtin["properties"].items():
                config_jsonschema["properties"].setdefault(key, value)

    def _validate_config(self, *, raise_errors: bool = True) -> list[str]:
        """Validate with the target's own rules: one sentence per mistake."""
        try:
            self.settings = Settings.from_config(self._config)
        except ConfigError as error:
            if raise_errors:
                raise
            return error.problems
        return []

    @property
    def target_connector(self) -> PostgresConnector:
        """The run's connector; created, connected and privilege-checked on first use."""
        if self._target_connector is None:
            connector = PostgresConnector(self.settings)
            try:
                connector.preflight()
            except BaseException:
                connector.dispose()
                raise
            self._target_connector = connector
        return self._target_connector

    @property
    def runs(self) -> RunRegistry:
        """What the run knows of its streams across their sinks."""
        if self._runs is None:
            self._runs = RunRegistry()
        return self._runs

    @property
    def max_parallelism(self) -> int:
        """Sinks drain one at a time, in the order their records arrived."""
        return 1

    @max_parallelism.setter
    def max_parallelism(self, new_value: int) -> None:
        _ = new_value

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
        return self._bad_input(
            f"RECORD for stream {stream_name} arrived before that stream's SCHEMA message"
        )

    def _process_schema_message(self, message_dict: dict[str, Any]) -> None:
        """Register a stream's schema; records staged under an earlier schema of the stream are
        written first, so records are applied in arrival order across schema changes."""
        stream_name = message_dict.get("stream")
        schema = message_dict.get("schema")
        if not isinstance(stream_name, str):
            raise self._bad_input("SCHEMA message without a stream name")
        if not isinstance(schema, dict) or "properties" not in schema:
            raise self._bad_input(
                f"SCHEMA message for stream {stream_name} has no properties key"
                ' (send "properties": {} for a stream without properties)'
            )
        for names in ("key_properties", "bookmark_properties"):
            listed = message_dict.get(names)
            if listed is not None and not (
                isinstance(listed, list) and all(isinstance(name, str) for name in listed)
            ):
                raise self._bad_input(
                    f"SCHEMA message for stream {stream_name} has {names}"
                    f" {json.dumps(listed, ensure_ascii=False)}; it must be a list of property"
                    " names (strings)"
                )
        self.runs.bookmarks[stream_name] = list(message_dict.get("bookmark_properties") or [])
        known = self.mapper.stream_maps.get(stream_name)
        changed = known is None or (
            known[0].raw_schema != schema
            or known[0].raw_key_properties != message_dict.get("key_properties")
        )
        if changed:
            for sink in self._pending_sinks():
                if sink.stream_name in {m.stream_alias for m in known or []}:
                    self.drain_one(sink)
        super()._process_schema_message(message_dict)
        self._route_records(stream_name)
        gc.freeze()  # what setting up the stream made lives as long as the stream
        self._emit_safe_state()

    def _route_records(self, stream_name: str) -> None:
        """Let the reader hand the stream's clean RECORD lines straight to `_fast_record`
        when no stream map changes its records."""
        self.reader.fast_records.pop(stream_name, None)
        stream_maps = self.mapper.stream_maps.get(stream_name) or []
        if len(stream_maps) != 1:
            return
        stream_map = stream_maps[0]
        if type(stream_map) is not SameRecordTransform or stream_map.flattening_enabled:
            return
        self.reader.fast_records[stream_name] = partial(self._fast_record, stream_map.stream_alias)

    def _fast_record(self, alias: str, envelope: Envelope, line: str | bytes) -> bool:
        """Stage a RECORD whose envelope msgspec read; False leaves the line to the slow way,
        which says what is wrong with it. This is the hot path of a load."""
        sink = self._sinks_active.get(alias)
        record = envelope.record
        if not isinstance(sink, PostgresSink) or record is None:
            return False
        decoded = sink.plan.decoder.from_text(record, len(line) <= SHORT_LINE)
        if decoded is None:
            return False
        self._record_seq += 1
        if sink.add(decoded, envelope.time_extracted, envelope.version, self._record_seq):
            self.drain_one(sink)
            self._emit_safe_state()
        if not self._record_seq & 1023:
            self._handle_max_record_age()
        return True

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
        stream_name = message_dict.get("stream")
        if not isinstance(stream_name, str):
            raise self._bad_input("BATCH message without a stream name")
        if stream_name not in self.mapper.stream_maps:
            raise self._bad_input(
                f"BATCH for stream {stream_name} arrived before that stream's SCHEMA message"
            )
        manifest = Manifest.from_message(message_dict, stream_name, self.reader.line_number)
        manifest.check(self.mapper.stream_maps[stream_name][0].raw_key_properties or [])
        envelope = {"type": "RECORD", "stream": stream_name}
        if "version" in message_dict:
            envelope["version"] = message_dict["version"]
        # Records from files may hold NUL characters or NaN/Infinity: clean them all.
        self.reader.maybe_dirty = True
        for record in manifest.records():
            self._process_record_message({**envelope, "record": record})

    def _process_activate_version_message(self, message_dict: dict[str, Any]) -> None:
        """Apply ACTIVATE_VERSION once every record of the stream before it is committed."""
        stream_name = message_dict.get("stream")
        version = message_dict.get("version")
        if type(version) is not int:
            raise self._bad_input(
                f"ACTIVATE_VERSION message for stream {stream_name} has no integer version"
            )
        if stream_name not in self.mapper.stream_maps:
            raise self._bad_input(
                f"ACTIVATE_VERSION for stream {stream_name} arrived before that stream's"
                " SCHEMA message"
            )
        for stream_map in self.mapper.stream_maps[stream_name]:
            sink = self._sinks_active.get(stream_map.stream_alias)
            if not isinstance(sink, PostgresSink):
                continue
            if not sink.process_activate_version_messages:
                self.logger.warning(
                    "ACTIVATE_VERSION ignored for stream %s: process_activate_version_messages"
                    " is false",
                    sink.stream_name,
                )
                continue
            self.drain_one(sink)
            self._emit_safe_state()
            sink.activate_version(version)

    def process_endofpipe(self) -> None:
        """At the end of input: commit everything, then end full refreshes and apply waiting
        ACTIVATE_VERSIONs, then emit the final state."""
        for pending in self._pending_sinks():
            self.drain_one(pending)
        for sink in list(self._sinks_active.values()):
            if isinstance(sink, PostgresSink):
                sink.finish_run()
        super().process_endofpipe()
        for sink in list(self._sinks_active.values()):
            if isinstance(sink, PostgresSink):
                self.logger.info("%s", sink.summary())
        # Release connections and stream locks now, also for a target used in-process.
        self.dispose()

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
        self._latest_state = state_value_text(self.reader.current_line)  # type: ignore[assignment]
        self._state_seq = self._record_seq
        self._emit_safe_state()

    def _emit_safe_state(self) -> None:
        """Emit the latest state if no record received before it is still uncommitted."""
        state = self._latest_state
        if not state:
            return
        pending = [sink.first_pending_seq for sink in self._pending_sinks()]
        if not pending or min(pending) > self._state_seq:
            self._write_state_message(state)

    def _write_state_message(self, state: Any) -> None:
        """Write a state value, byte for byte as received, unless it was just written."""
        text = state if isinstance(state, str) else json.dumps(state, default=str)
        if text == self._emitted_state:
            return
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
        self._emitted_state = text

    @property
    def lock_wait_refusal(self) -> str | None:
        """Why the run stopped waiting for another session's lock, if it did."""
        if self._target_connector is None:
            return None
        return self._target_connector.lock_watch.gave_up

    def dispose(self) -> None:
        """Release connections, the tunnel and key files."""
        if self._target_connector is not None:
            self._target_connector.dispose()
            self._target_connector = None

    @classmethod
    def cb_config(
        cls, ctx: click.Context, param: click.Option, value: tuple[str, ...]
    ) -> _ConfigInput:
        """Read the `--config` files; one that is not a config file ends the run with one
        sentence (SPEC §2)."""
        _ = param
        config: dict[str, Any] = {}
        for path in value:
            if path == "ENV":
                continue
            try:
                config |= read_config_file(path)
            except ConfigError as error:
                cls.logger.error("%s", error)
                ctx.exit(1)
        if "ENV" in value:
            problems = unknown_environment_settings(os.environ)
            for problem in problems:
                cls.logger.error("%s", problem)
            if problems:
                ctx.exit(1)
        return _ConfigInput(config=config, parse_env="ENV" in value)

    @classmethod
    def invoke(  # type: ignore[override]
        cls,
        *,
        about: bool = False,
        about_format: str | None = None,
        config: _ConfigInput | None = None,
        file_input: Any = None,
    ) -> None:
        """Run the target; a refusal is logged as one sentence and exits 1, no traceback."""
        if about:
            cls.print_about(about_format)
            sys.exit(0)
        cls.print_version(print_fn=cls.logger.info)
        config = config or _ConfigInput()
        target: TargetPostgresHP | None = None
        try:
            target = cls(
                config=config.config, validate_config=True, parse_env_config=config.parse_env
            )
            _ = target.target_connector
            try:
                target.listen(file_input)
            except (BadInput, PermissionMissing):
                # Keep everything read before the bad line (or the SCHEMA of a stream whose
                # schema is refused), and the state that covers it.
                target.drain_all()
                raise
        except (TargetError, psycopg.Error) as error:
            # A statement the lock watch cancelled fails wherever it was; the watch says why.
            gave_up = target.lock_wait_refusal if target is not None else None
            if gave_up is not None:
                cls.logger.error("%s.", gave_up)
            elif isinstance(error, TargetError):
                for line in str(error).splitlines():
                    cls.logger.error("%s", line)
            else:
                cls.logger.error("%s", _database_refusal(error))
            sys.exit(1)
        finally:
            if target is not None:
                target.dispose()


def _database_refusal(error: psycopg.Error) -> str:
    """One sentence for a database error no step of the target turned into its own."""
    diag = error.diag
    reason = diag.message_primary or first_line(error)
    where = f" (table {diag.schema_name}.{diag.table_name})" if diag.table_name else ""
    state = f", SQLSTATE {diag.sqlstate}" if diag.sqlstate else ""
    return (
        f"The database refused the load{where}: {reason}{state}. Every record before the last"
        " STATE this run emitted is committed: fix the cause and run again from that state"
    )
