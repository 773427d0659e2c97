"""Sinks move one stream's records into its raw table, one committed COPY per batch."""

from __future__ import annotations

from typing import Any

from singer_sdk.sql import SQLSink

from target_postgres_hp.connector import PostgresConnector
from target_postgres_hp.naming import raw_identifier, raw_table_name, split_stream_name
from target_postgres_hp.rawdata import RawRowBuilder


class PostgresSink(SQLSink[PostgresConnector]):
    """Writes a stream's records to `<raw schema>.<namespace>_raw__stream_<stream>`."""

    connector_class = PostgresConnector

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = self.connector.settings
        self.MAX_SIZE_DEFAULT = settings.batch_size_rows
        self._rows = RawRowBuilder(sync_id=self.sync_started_at)
        self.active_version = 0

    @property
    def namespace(self) -> str:
        """The stream's schema: the namespace part of its name, else the first `schema`."""
        settings = self.connector.settings
        if settings.ignore_stream_namespace:
            return settings.default_schema
        return split_stream_name(self.stream_name).namespace or settings.default_schema

    @property
    def stream_table(self) -> str:
        """The table part of the stream name (the whole name with ignore_stream_namespace)."""
        if self.connector.settings.ignore_stream_namespace:
            return self.stream_name
        return split_stream_name(self.stream_name).table

    @property
    def raw_schema(self) -> str:
        """Schema of the raw table."""
        return raw_identifier(self.connector.settings.raw_data_schema)

    @property
    def raw_table(self) -> str:
        """Name of the raw table."""
        return raw_table_name(self.namespace, self.stream_table)

    def get_validator(self) -> None:
        """Records are never rejected for failing JSON-schema validation (SPEC §4.4)."""
        return

    def setup(self) -> None:
        """Create the raw table; final tables are typed from it."""
        self.connector.prepare_raw_table(self.raw_schema, self.raw_table)

    def add_record(self, record: dict[str, Any], message: dict[str, Any]) -> None:
        """Stage one record of the current batch as its raw row."""
        context = self._get_context(record)
        version = message.get("version")
        context.setdefault("rows", []).append(
            self._rows.row(
                record,
                time_extracted=message.get("time_extracted"),
                generation_id=version if isinstance(version, int) else self.active_version,
            )
        )

    def process_record(self, record: dict[str, Any], context: dict[str, Any]) -> None:
        """Stage a record that arrives without its message (SDK code paths)."""
        context.setdefault("rows", []).append(
            self._rows.row(record, time_extracted=None, generation_id=self.active_version)
        )

    def activate_version(self, new_version: int) -> None:
        """Keep the version as the generation id of later records that carry none.

        The SDK's default would add `_sdc_*` columns to a table of the stream's name; this
        target's raw tables carry the version in `_airbyte_generation_id` instead, and replacing
        final-table contents by version belongs to the typed final tables.
        """
        self.active_version = new_version
        self.logger.info(
            "ACTIVATE_VERSION %s recorded for stream %s", new_version, self.stream_name
        )

    def process_batch(self, context: dict[str, Any]) -> None:
        """COPY the batch into the raw table and commit."""
        rows = context.get("rows", [])
        if rows:
            self.connector.copy_raw_rows(self.raw_schema, self.raw_table, rows)
