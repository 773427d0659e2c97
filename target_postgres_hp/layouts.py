"""Table layouts (SPEC §4): which tables a stream's rows go to, as strategy objects registered
by name in `LAYOUTS`. Each makes the stream's `plan.StreamPlan` from its SCHEMA, creating or
evolving its tables on the way.

- `raw_and_final`: every record in the raw table as received, and typed into the final table.
- `direct`: the typed final table alone (SPEC §4.5), as the destination's direct load.
- `raw_only` (`disable_type_dedupe`): the raw table alone; a later typed run types what it left.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Protocol

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
from target_postgres_hp.config import Settings
from target_postgres_hp.connector import PostgresConnector
from target_postgres_hp.decode import RecordDecoder
from target_postgres_hp.finaltables import FinalColumn
from target_postgres_hp.loading import FinalTarget, write_typed
from target_postgres_hp.loads import LoadMethod
from target_postgres_hp.naming import final_identifier, raw_identifier, renamed_keys
from target_postgres_hp.plan import Planning, StreamPlan, StreamSchema
from target_postgres_hp.rawdata import exact_integer, exact_number, number_texts_restored
from target_postgres_hp.records import RecordFields

#: Properties whose value marks a record as a delete (SPEC §6.3).
DELETION_MARKERS = ("_ab_cdc_deleted_at", "_sdc_deleted_at")


class Layout(Protocol):
    """Makes a stream's plan, with its tables ready."""

    name: str

    def plan(self, planning: Planning) -> StreamPlan: ...


def _lock(planning: Planning, *, raw: bool = True) -> tuple[str, str]:
    """Lock the stream's tables for this run; return the raw schema and the raw table's name
    (whether the layout makes it or not: the lock is named after it in every layout, so runs
    of one stream in different layouts exclude each other too). Without a raw table (`raw`
    False), messages name the final table instead."""
    stream, place = planning.schema.stream, planning.place
    raw_schema = raw_identifier(planning.connector.settings.raw_data_schema)
    shown = None if raw else f"{place.final_schema}.{place.final_table}"
    planning.connector.stream_locks.take(stream, f"{raw_schema}.{place.raw_table}", shown)
    return raw_schema, place.raw_table


def _raw_table(planning: Planning) -> tuple[str, str]:
    """Lock the stream's tables for this run and create its raw table if missing."""
    raw_schema, name = _lock(planning)
    place = planning.place
    table = planning.connector.prepare_raw_table(
        raw_schema, name, planning.schema.stream, place.final_schema, place.table
    )
    return raw_schema, table


class RawOnly:
    """The raw table alone."""

    name = "raw_only"

    def plan(self, planning: Planning) -> StreamPlan:
        schema, keys = planning.schema, planning.schema.keys
        raw = _raw_table(planning)
        return StreamPlan(
            stream=schema.stream,
            placement=planning.place,
            layout=self,
            load=planning.load,
            raw=raw,
            helpers=raw,
            decoder=RecordDecoder(
                schema.stream,
                keys,
                RecordFields([], frozenset(), keys),
                renamed=renamed_keys(schema.properties),
            ),
        )


class RawAndFinal:
    """The raw table and the typed final table."""

    name = "raw_and_final"

    def plan(self, planning: Planning) -> StreamPlan:
        """Create the raw table, then plan the final table (`_typed_plan`); typing starts with
        the raw rows an earlier raw-only run left untyped."""
        planning.connector.check_schema(planning.place.final_schema, planning.schema.stream)
        raw = _raw_table(planning)
        return _typed_plan(self, planning, raw, raw)


class Direct:
    """The typed final table alone (SPEC §4.5), as the destination's direct load."""

    name = "direct"

    def plan(self, planning: Planning) -> StreamPlan:
        """Plan the final table (`_typed_plan`); a raw table another layout left is left
        alone, and said so."""
        connector, stream, place = planning.connector, planning.schema.stream, planning.place
        connector.check_schema(place.final_schema, stream)
        raw_schema, name = _lock(planning, raw=False)
        helpers = (
            raw_schema,
            connector.helper_base(raw_schema, name, stream, place.final_schema, place.table),
        )
        if connector.has_table(*helpers):
            planning.logger.info(
                "Stream %s: raw table %s.%s, which the raw_and_final or raw_only layout wrote,"
                " is left alone: the direct layout writes the final table only (raw rows an"
                " earlier raw-only run left untyped stay untyped until a raw_and_final run)",
                stream,
                *helpers,
            )
        return _typed_plan(self, planning, None, helpers)


def _typed_plan(
    layout: Layout,
    planning: Planning,
    raw: tuple[str, str] | None,
    helpers: tuple[str, str],
) -> StreamPlan:
    """Create or evolve the final table, match its key index to the load method, plan the
    casts, then let the load method ready its own tables."""
    schema, load, connector, logger = (
        planning.schema,
        planning.load,
        planning.connector,
        planning.logger,
    )
    stream, settings, place = schema.stream, connector.settings, planning.place
    final_schema = place.final_schema
    table, columns, vacated = connector.prepare_final_table(
        final_schema,
        place.final_table,
        stream,
        [
            (prop, final_identifier(prop), column_type(spec))
            for prop, spec in schema.properties.items()
        ],
    )
    positions = {column.prop: index for index, column in enumerate(columns)}
    names = [column.name for column in columns]
    keys = _key_columns(schema, positions, names, load, logger)
    cursor = _cursor_column(schema, positions, names, logger)
    key_types = (
        None
        if connector.nulls_not_distinct or not keys
        else [columns[positions[key]].catalog_type for key in schema.keys]
    )
    connector.prepare_key_index(final_schema, table, keys, cursor, key_types)
    deleting = bool(keys) and settings.cdc_deletion_mode == "hard_delete"
    markers = [m for m in DELETION_MARKERS if m in positions] if deleting else []
    renamed = renamed_keys(schema.properties)
    caster, fields = _casts(schema, columns, positions, markers, connector.server_version, renamed)
    final = FinalTarget(
        schema=final_schema,
        table=table,
        columns=names,
        keys=keys,
        key_types=key_types,
        cursor=cursor,
        deleted=[(names[positions[marker]], marker) for marker in markers],
        vacated=vacated,
        shape=_shape(final_schema, table, columns),
    )
    plan = StreamPlan(
        stream=stream,
        placement=place,
        layout=layout,
        load=load,
        raw=raw,
        helpers=helpers,
        decoder=RecordDecoder(
            stream,
            schema.keys,
            fields,
            caster,
            [(marker, positions[marker]) for marker in markers],
            raw_json=raw is not None,
            renamed=renamed,
        ),
        final=final,
    )

    def recover() -> None:
        if raw is not None:
            type_untyped_raw_rows(plan, caster, connector, settings, logger)

    load.prepare_final(plan, connector, planning.run, recover)
    return plan


def _shape(schema: str, table: str, columns: list[FinalColumn]) -> str:
    """A short digest of a final table and its columns' names and types."""
    described = json.dumps([schema, table, [(c.name, c.catalog_type) for c in columns]])
    return hashlib.blake2s(described.encode("utf-8", "surrogatepass"), digest_size=4).hexdigest()


def _key_columns(
    schema: StreamSchema,
    positions: dict[str, int],
    names: list[str],
    load: LoadMethod,
    logger: logging.Logger,
) -> list[str]:
    """The final table's key columns: none for append, or when a key is not a property."""
    keys = [names[positions[key]] for key in schema.keys if key in positions]
    if len(keys) != len(schema.keys):
        logger.warning(
            "Stream %s: key properties %s are not all properties of its schema; its rows"
            " are appended without deduplication",
            schema.stream,
            schema.keys,
        )
        return []
    return keys if load.dedups else []


def _cursor_column(
    schema: StreamSchema, positions: dict[str, int], names: list[str], logger: logging.Logger
) -> str | None:
    """The column of the stream's cursor: the first of its `bookmark_properties`."""
    if not schema.bookmarks:
        return None
    cursor = schema.bookmarks[0]
    if cursor not in positions:
        logger.warning(
            "Bookmark property %r of stream %s is not a top-level property; rows of a key"
            " are decided by extraction time and arrival",
            cursor,
            schema.stream,
        )
        return None
    return names[positions[cursor]]


def _casts(
    schema: StreamSchema,
    columns: list[FinalColumn],
    positions: dict[str, int],
    markers: list[str],
    server_version: int,
    renamed: dict[str, str],
) -> tuple[RowCaster, RecordFields]:
    """The stream's row caster and fast-way decoder. Object and array columns take the JSON
    text of the line, unless a key or a deletion marker (whose null must be told apart) is
    one. The caster reads a cleaned record: a property whose name JSONB cannot hold by the
    key `renamed` gives it (the fast way never takes such a stream: msgspec cannot match its
    name)."""
    non_finite = server_version >= 140000
    plan: list[tuple[str, Cast, ColumnType | None]] = []
    for column in columns:
        kind = effective_type(column.wanted, column.catalog_type)
        field = renamed.get(column.prop, column.prop)
        plan.append((field, cast_for(kind, non_finite_numbers=non_finite), kind))
    special = {positions[prop] for prop in [*schema.keys, *markers] if prop in positions}
    json_texts = frozenset(
        index
        for index, (_, _, kind) in enumerate(plan)
        if kind in JSON_TEXT_COLUMNS and index not in special
    )
    typed = {
        index: kind.decodes_as
        for index, (_, _, kind) in enumerate(plan)
        if kind is not None and kind.decodes_as is not None and index not in special
    }
    reads = {
        index: kind.reads_as
        for index, (_, _, kind) in enumerate(plan)
        if kind is not None and kind.reads_as is not None
    }
    fields = RecordFields(
        [column.prop for column in columns], json_texts, schema.keys, typed, reads
    )
    return RowCaster(plan, json_texts, fields.typed, fields.width), fields


def type_untyped_raw_rows(
    plan: StreamPlan,
    caster: RowCaster,
    connector: PostgresConnector,
    settings: Settings,
    logger: logging.Logger,
) -> None:
    """Type into the final table the raw rows an earlier run committed without typing them
    (`disable_type_dedupe`), oldest first, before this run's records (SPEC §9). Each chunk is
    written and marked typed in one transaction."""
    final, raw = plan.final, plan.raw
    if final is None or raw is None:
        return
    with connector.raw_connection() as conn:
        if conn.execute(sql.has_untyped(*raw)).fetchone() is None:
            return
    key_set = plan.decoder.key_fields
    markers = [prop for _, prop in final.deleted]
    typed = 0
    held: list[str] = []
    last_id = ""
    while True:
        with connector.raw_connection() as conn:
            found = conn.execute(
                sql.untyped_raw_rows(*raw), (last_id, settings.batch_size_rows)
            ).fetchall()
            if not found:
                break
            rows = []
            written = []
            deletes = False
            for raw_id, extracted_at, data_text, meta_text, generation_id in found:
                # Numbers as the raw table's JSONB writes them (`1E-7` is 0.0000001 there).
                data = json.loads(data_text, parse_float=exact_number, parse_int=exact_integer)
                if "TRUNCATED" in meta_text:
                    data = number_texts_restored(data, json.loads(meta_text))
                values, changes = caster.row(data)
                if key_set.intersection(change["field"] for change in changes):
                    # A key never becomes NULL by typing (SPEC §6.3): the row stays untyped
                    # in the raw table, and every run says so.
                    held.append(raw_id)
                    continue
                written.append(raw_id)
                plan.decoder.name_changes(changes)
                if changes:
                    meta = json.loads(meta_text)
                    meta["changes"] = [*meta.get("changes", []), *changes]
                    meta_text = json.dumps(meta)
                deletes = deletes or any(data.get(marker) is not None for marker in markers)
                rows.append([*values, raw_id, extracted_at, meta_text, generation_id])
            if rows:
                write_typed(conn, final, rows, deletes=deletes)
                conn.execute(sql.mark_typed(*raw), (written,))
        typed += len(written)
        last_id = found[-1][0]
    logger.info(
        "Stream %s: typed %s raw rows that an earlier run left untyped into %s.%s",
        plan.stream,
        typed,
        final.schema,
        final.table,
    )
    if held:
        logger.warning(
            "Stream %s: %s untyped raw rows of %s.%s stay untyped because a key value of"
            " theirs cannot be stored in its key column (raw ids %s); correct them there"
            " or change the key column's type, and the next run types them",
            plan.stream,
            len(held),
            *raw,
            ", ".join(held[:5]) + (", ..." if len(held) > 5 else ""),
        )


#: The layouts by name; a new one is a class above and a line here, plus its setting and docs.
LAYOUTS: dict[str, Layout] = {
    layout.name: layout for layout in (RawAndFinal(), Direct(), RawOnly())
}


def layout_for(settings: Settings) -> Layout:
    """The layout the settings choose (`table_layout`)."""
    return LAYOUTS[settings.table_layout]
