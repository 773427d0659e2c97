"""target-postgres-hp: the Singer target that declares settings and capabilities and hands each
stream's records to its sink."""

from __future__ import annotations

import copy
import sys
from typing import Any, ClassVar

from singer_sdk.helpers.capabilities import (
    ACTIVATE_VERSION_CONFIG,
    FLATTENING_CONFIG,
    STREAM_MAPS_CONFIG,
    CapabilitiesEnum,
    PluginCapabilities,
    TargetCapabilities,
)
from singer_sdk.plugin_base import _ConfigInput
from singer_sdk.sql import SQLTarget

from target_postgres_hp.config import CONFIG_SCHEMA, Settings
from target_postgres_hp.connector import PostgresConnector
from target_postgres_hp.errors import ConfigError, TargetError
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
        TargetCapabilities.TARGET_SCHEMA,
    ]

    settings: Settings
    _target_connector: PostgresConnector | None = None

    @classmethod
    def append_builtin_config(cls, config_jsonschema: dict[str, Any]) -> None:
        """Add the SDK's settings for the capabilities declared above, and no others (the
        SDK's record validation, _sdc metadata and hard_delete switches do not apply)."""
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

    def _process_record_message(self, message_dict: dict[str, Any]) -> None:
        """Hand a RECORD to its sink with the message around it (time_extracted, version).

        Unlike the SDK's default this neither validates the record against its JSON schema
        nor converts date-time strings: the raw table keeps the record as received.
        """
        self._assert_line_requires(message_dict, requires={"stream", "record"})
        stream_name = message_dict["stream"]
        if stream_name not in self.mapper.stream_maps:
            self._assert_sink_exists(stream_name)
        for stream_map in self.mapper.stream_maps[stream_name]:
            record = stream_map.transform(copy.copy(message_dict["record"]))
            if record is None:
                continue
            self._assert_sink_exists(stream_map.stream_alias)
            sink = self.get_sink(stream_map.stream_alias, record=record)
            if not isinstance(sink, PostgresSink):
                msg = "every sink of this target is a PostgresSink"
                raise TypeError(msg)
            sink._singer_validate_message(record)
            sink.tally_record_read()
            sink.add_record(record, message_dict)
            sink.record_counter_metric.increment()
            if sink.is_full:
                self.drain_one(sink)
        self._handle_max_record_age()

    def dispose(self) -> None:
        """Release connections, the tunnel and key files."""
        if self._target_connector is not None:
            self._target_connector.dispose()
            self._target_connector = None

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
            target.listen(file_input)
        except TargetError as error:
            for line in str(error).splitlines():
                cls.logger.error("%s", line)
            sys.exit(1)
        finally:
            if target is not None:
                target.dispose()


def main() -> None:
    """Console entry point."""
    TargetPostgresHP.cli()
