"""target-postgres-hp: the Singer target that declares settings and capabilities, opens the
run's connector, and hands each stream's messages to its sink (`routing.MessageRouter`)."""

from __future__ import annotations

import gc
import sys
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
from singer_sdk.plugin_base import _ConfigInput

from target_postgres_hp.batchfiles import BatchFiles
from target_postgres_hp.cli import read_configs, run
from target_postgres_hp.config import (
    CONFIG_SCHEMA,
    Settings,
)
from target_postgres_hp.connector import PostgresConnector
from target_postgres_hp.errors import (
    ConfigError,
)
from target_postgres_hp.loading import refuses_data
from target_postgres_hp.messages import schema_problem, stream_message_problem
from target_postgres_hp.routing import MessageRouter
from target_postgres_hp.sinks import PostgresSink


class TargetPostgresHP(MessageRouter):
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

    settings: Settings
    _target_connector: PostgresConnector | None = None
    #: The `--config` files the run was given (`cli.run`).
    config_files: tuple[str, ...] = ()

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
            self.wait_limit = float(self.settings.batch_wait_limit_seconds)
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

    def batch_files(self) -> BatchFiles:
        """Which files BATCH manifests may name (SPEC §9): `batch_root`, and never the run's
        config or key files."""
        keyfiles = self.target_connector.database.keyfiles
        return BatchFiles.of_run(self.settings, self.config_files, keyfiles.made)

    @property
    def max_parallelism(self) -> int:
        """Sinks drain one at a time, in the order their records arrived."""
        return 1

    @max_parallelism.setter
    def max_parallelism(self, new_value: int) -> None:
        _ = new_value

    def _process_schema_message(self, message_dict: dict[str, Any]) -> None:
        """Register a stream's schema; records staged under an earlier schema of the stream are
        written first, so records are applied in arrival order across schema changes."""
        problem = schema_problem(message_dict)
        if problem is not None:
            raise self._bad_input(problem)
        stream_name: str = message_dict["stream"]
        schema = message_dict["schema"]
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
        try:
            super()._process_schema_message(message_dict)
        except psycopg.Error as error:
            if not refuses_data(error):
                raise
            # Too many columns, say: bad input at this line, which keeps what came before it.
            reason = f"{error.diag.message_primary or type(error).__name__}, SQLSTATE"
            raise self._bad_input(
                f"the database refused the tables of stream {stream_name} ({reason}"
                f" {error.sqlstate}): change the stream's schema so that the database can hold"
                " it, and run again from the last STATE this run emitted"
            ) from None
        self._route_records(stream_name)
        gc.freeze()  # what setting up the stream made lives as long as the stream
        self._emit_safe_state()

    def _process_activate_version_message(self, message_dict: dict[str, Any]) -> None:
        """Apply ACTIVATE_VERSION once every record of the stream before it is committed."""
        problem = stream_message_problem("ACTIVATE_VERSION", message_dict, self.mapper.stream_maps)
        if problem is not None:
            raise self._bad_input(problem)
        stream_name = message_dict["stream"]
        version: int = message_dict["version"]
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
            # A full refresh it ended frees the states after the load's records.
            self._emit_safe_state()

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
        """Read the `--config` files (`cli.read_configs`)."""
        _ = param
        return read_configs(cls.logger, ctx, value)

    @classmethod
    def invoke(  # type: ignore[override]
        cls,
        *,
        about: bool = False,
        about_format: str | None = None,
        config: _ConfigInput | None = None,
        file_input: Any = None,
    ) -> None:
        """Print `--about`, or run the target (`cli.run`)."""
        if about:
            cls.print_about(about_format)
            sys.exit(0)
        cls.print_version(print_fn=cls.logger.info)
        run(cls, config or _ConfigInput(), file_input)
