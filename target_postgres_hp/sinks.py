"""Sinks move one stream's records into its raw table and its typed final table: each batch is
typed in Python and streamed into both tables by a `loading.BatchWriter`, which commits the
two together at the end of the batch."""

from __future__ import annotations

from typing import Any

from singer_sdk.sql import SQLSink

from target_postgres_hp.casting import (
    Cast,
    ColumnType,
    RowCaster,
    cast_for,
    column_type,
    effective_type,
)
from target_postgres_hp.connector import PostgresConnector
from target_postgres_hp.loading import BatchWriter, FinalTarget, PgConnection
from target_postgres_hp.naming import (
    final_identifier,
    raw_identifier,
    raw_table_name,
    split_stream_name,
)
from target_postgres_hp.rawdata import RawRowBuilder, clean_record


class PostgresSink(SQLSink[PostgresConnector]):
    """Writes a stream's records to its raw table and, unless `disable_type_dedupe`, to its
    final table."""

    connector_class = PostgresConnector

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = self.connector.settings
        self.MAX_SIZE_DEFAULT = settings.batch_size_rows
        self._rows = RawRowBuilder(sync_id=self.sync_started_at)
        self.active_version = 0
        self.load_method = settings.load_method_for(
            self.stream_name, has_keys=bool(self.key_properties)
        )
        self.final: FinalTarget | None = None
        self._caster = RowCaster([])
        #: The key properties, looked up once (the SDK's property conforms them per call).
        self.record_keys = list(self.key_properties)
        self._writer: BatchWriter | None = None
        self._connections: tuple[PgConnection, PgConnection] | None = None
        #: Input sequence number of the first record of the pending batch.
        self.first_pending_seq = 0

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

    def get_validator(self) -> None:
        """Records are never rejected for failing JSON-schema validation (SPEC §4.4)."""
        return

    def setup(self) -> None:
        """Create the raw table, then create or extend the final table and plan the casts."""
        connector = self.connector
        self.raw_table = connector.prepare_raw_table(
            self.raw_schema, raw_table_name(self.namespace, self.stream_table), self.stream_name
        )
        if connector.settings.disable_type_dedupe:
            return
        properties = self.schema.get("properties") or {}
        schema = final_identifier(self.namespace)
        table, columns = connector.prepare_final_table(
            schema,
            final_identifier(self.stream_table),
            self.stream_name,
            [
                (prop, final_identifier(prop), column_type(spec))
                for prop, spec in properties.items()
            ],
        )
        positions = {column.prop: index for index, column in enumerate(columns)}
        key_positions = [positions[key] for key in self.record_keys if key in positions]
        keys = [columns[position].name for position in key_positions]
        dedup = self.load_method == "append-dedup" and bool(keys)
        if dedup:
            connector.prepare_unique_index(schema, table, keys)
        non_finite = connector.server_version >= 140000
        plan: list[tuple[str, Cast, ColumnType | None]] = []
        for column in columns:
            column_kind = effective_type(column.wanted, column.catalog_type)
            plan.append(
                (column.prop, cast_for(column_kind, non_finite_numbers=non_finite), column_kind)
            )
        self._caster = RowCaster(plan)
        self.final = FinalTarget(
            schema=schema,
            table=table,
            columns=[column.name for column in columns],
            keys=keys if dedup else [],
            key_positions=key_positions if dedup else [],
        )

    def add_record(
        self, record: dict[str, Any], message: dict[str, Any], *, maybe_dirty: bool = True
    ) -> None:
        """Stage one record of the current batch as its raw row and its final row.

        `maybe_dirty` False promises the record holds no NUL character and no NaN/Infinity
        (the reader saw none in the line), which skips the walk that would find them.
        """
        version = message.get("version")
        generation_id = version if type(version) is int else self.active_version
        data, changes = clean_record(record) if maybe_dirty else (record, [])
        writer = self._writer or self._start_batch()
        raw_id, extracted_at, data_json, meta_json = self._rows.row(
            data, changes, message.get("time_extracted")
        )
        raw_row = (raw_id, extracted_at, writer.loaded_at, data_json, meta_json, generation_id)
        if self.final is None:
            writer.add(raw_row, None)
            return
        values, typing_changes = self._caster.row(data)
        if typing_changes:
            meta_json = self._rows.meta_json(changes + typing_changes)
        values += (raw_id, extracted_at, meta_json, generation_id)
        writer.add(raw_row, values)

    def _start_batch(self) -> BatchWriter:
        pair = self.connector.acquire_stream_connections()
        if pair is None:
            msg = "no free connection for a new batch; the target drains a sink first"
            raise RuntimeError(msg)
        self._connections = pair
        self._writer = BatchWriter(pair[0], pair[1], self.raw_schema, self.raw_table, self.final)
        return self._writer

    def process_record(self, record: dict[str, Any], context: dict[str, Any]) -> None:
        """Stage a record that arrives without its message (SDK code paths)."""
        self.add_record(record, {})

    def activate_version(self, new_version: int) -> None:
        """Keep the version as the generation id of later records that carry none."""
        self.active_version = new_version
        self.logger.info(
            "ACTIVATE_VERSION %s recorded for stream %s", new_version, self.stream_name
        )

    def process_batch(self, context: dict[str, Any]) -> None:
        """Commit the batch's rows in the raw and final tables."""
        writer, self._writer = self._writer, None
        if writer is None:
            return
        try:
            writer.commit()
        except BaseException:
            writer.abort()
            raise
        finally:
            self._release_connections()

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
