"""Final tables (SPEC §4.2, §5, §7): a stream's typed table made or brought up to its schema,
each property's column found by the name recorded for it, new columns added and columns
widened in place (with the views on them set aside and recreated, SPEC §8)."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.sql import SQL

from target_postgres_hp import sql
from target_postgres_hp.casting import ColumnType, catalog_column_type, widening
from target_postgres_hp.dependents import dependents_set_aside
from target_postgres_hp.errors import DependentObjects
from target_postgres_hp.loading import PgConnection
from target_postgres_hp.naming import assign_names, derived_name, shown_name
from target_postgres_hp.ownership import comment_of, comment_value, table_for_stream

logger = logging.getLogger("target-postgres-hp.connector")

#: Final-table columns no property may take (SPEC §5): the `_airbyte_` columns, and the
#: system columns every PostgreSQL table has (a column named `xmin` cannot be created).
RESERVED_COLUMNS = frozenset(
    [*sql.FINAL_META_COLUMNS, "tableoid", "xmin", "cmin", "xmax", "cmax", "ctid"]
)


@dataclass(frozen=True)
class FinalColumn:
    """A property's column in a final table."""

    prop: str
    name: str
    wanted: ColumnType
    catalog_type: str


def make_final_table(
    conn: PgConnection,
    schema: str,
    conformed: str,
    stream: str,
    properties: Sequence[tuple[str, str, ColumnType]],
    *,
    drop_cascade: bool,
) -> tuple[str, list[FinalColumn], list[str]]:
    """Create or extend the final table of a stream; return its name, the column of every
    property in table order, and the columns no property fills any more.

    `properties` holds (property, conformed column name, wanted type) in schema order. Columns
    keep the name recorded for their property in earlier runs; new properties get new nullable
    columns, each with its property recorded in the column comment.
    """
    table, holder = table_for_stream(conn, schema, conformed, stream)
    if table != conformed:
        logger.warning(
            "%s would share table %s.%s: stream %s is stored in %s.%s instead",
            f"Streams {shown_name(holder)} and {shown_name(stream)}"
            if holder is not None
            else f"Stream {shown_name(stream)} and a table of the target",
            schema,
            conformed,
            shown_name(stream),
            schema,
            table,
        )
    existing = conn.execute(sql.TABLE_COLUMNS, (schema, table)).fetchall()
    owners = {name: comment_value(comment, "property") for name, _, comment in existing}
    types = {name: type_name for name, type_name, _ in existing}
    names = assign_names(
        [(prop, column) for prop, column, _ in properties], owners, RESERVED_COLUMNS
    )
    new = [
        (prop, names[prop], wanted) for prop, _, wanted in properties if names[prop] not in types
    ]
    widen = [
        (prop, names[prop], change)
        for prop, _, wanted in properties
        if names[prop] in types and (change := widening(types[names[prop]], wanted)) is not None
    ]
    if widen:
        _widen(conn, schema, table, stream, widen, drop_cascade=drop_cascade)
        for _, column, (target, _) in widen:
            types[column] = target.catalog
    if not existing:
        conn.execute(
            sql.create_final_table(
                schema, table, [(column, wanted.sql) for _, column, wanted in new]
            )
        )
        conn.execute(sql.comment_on_table(schema, table, comment_of("stream", stream)))
    else:
        for _, column, wanted in new:
            conn.execute(sql.add_column(schema, table, column, wanted.sql))
    for prop, column, wanted in new:
        conn.execute(sql.comment_on_column(schema, table, column, comment_of("property", prop)))
        types[column] = wanted.catalog
        if column != prop:
            logger.info(
                "Property %r of stream %s is stored in column %r of %s.%s",
                prop,
                stream,
                column,
                schema,
                table,
            )
    order = {name: position for position, name in enumerate(types)}
    columns = sorted(
        (
            FinalColumn(prop, names[prop], wanted, types[names[prop]])
            for prop, _, wanted in properties
        ),
        key=lambda column: order[column.name],
    )
    filled = {column.name for column in columns}
    vacated = [name for name in types if name not in filled and name not in RESERVED_COLUMNS]
    return table, columns, vacated


def _widen(
    conn: PgConnection,
    schema: str,
    table: str,
    stream: str,
    changes: Sequence[tuple[str, str, tuple[ColumnType, SQL]]],
    *,
    drop_cascade: bool,
) -> None:
    """Change columns to wider types in place (SPEC §7), with the views that depend on
    them set aside and recreated in the same transaction (SPEC §8)."""
    columns = [column for _, column, _ in changes]
    described = ", ".join(f"{column} to {target.sql}" for _, column, (target, _) in changes)
    change = f"change the type of {schema}.{table} column {described}"
    with dependents_set_aside(
        conn, schema, table, columns, drop_cascade=drop_cascade, change=change
    ):
        for prop, column, (target, using) in changes:
            try:
                conn.execute(sql.alter_column_type(schema, table, column, target.sql, using))
            except psycopg.errors.FeatureNotSupported as error:
                # Something other than a view uses the column (a trigger, a policy...).
                msg = (
                    f"The target must {change}, but PostgreSQL refuses:"
                    f" {error.diag.message_primary}. Nothing was changed: drop or change"
                    " that object, then run again"
                )
                raise DependentObjects(msg) from None
            logger.info(
                "Column %r of %s.%s (property %r of stream %s) widened to %s",
                column,
                schema,
                table,
                prop,
                stream,
                target.sql,
            )


def match_key_index(
    conn: PgConnection,
    schema: str,
    table: str,
    keys: Sequence[str],
    cursor: str | None,
    key_types: Sequence[str] | None,
    *,
    nulls_equal: bool,
) -> None:
    """Give a table the unique key index of its dedup key, or none for `keys` empty
    (`nulls_equal`: the server can say NULLS NOT DISTINCT).

    The index records its key in its comment. When the key or the load method changed since
    the index was made, the old index goes; before a new one is built, rows that now share a
    key are reduced to the winner of SPEC §6.3 (the only step here that reads the whole table,
    and only on such a change).
    """
    index = derived_name(table, "key")
    described: dict[str, Any] = {"key": list(keys), "nulls": "equal"}
    if key_types is not None:
        described["types"] = list(key_types)
    wanted = json.dumps(described) if keys else None
    found = conn.execute(sql.RELATION_COMMENT, (schema, index, sql.INDEX_KINDS)).fetchone()
    if found is not None and found[0] == wanted:
        return
    if found is not None:
        conn.execute(sql.drop_index(schema, index))
    if not keys:
        if found is not None:
            logger.info("Dropped key index %s of %s.%s: no dedup key now", index, schema, table)
        return
    deleted = conn.execute(sql.delete_key_losers(schema, table, keys, cursor)).rowcount
    if deleted:
        logger.warning(
            "Key of %s.%s is now (%s): %d rows that shared a key with a better row were removed",
            schema,
            table,
            ", ".join(keys),
            deleted,
        )
    conn.execute(
        sql.create_unique_index(
            schema, table, index, sql.key_terms(keys, key_types), nulls_equal=nulls_equal
        )
    )
    conn.execute(sql.comment_on_index(schema, index, wanted or ""))


def match_columns(conn: PgConnection, schema: str, name: str, like: tuple[str, str]) -> bool:
    """Bring an existing helper table up to the columns and types of the final table `like`
    (schema, table): add the columns it lacks, widen or convert the others. False when the
    table does not exist."""
    have = {
        column: type_name
        for column, type_name, _ in conn.execute(sql.TABLE_COLUMNS, (schema, name))
    }
    if not have:
        return False
    for column, type_name, _ in conn.execute(sql.TABLE_COLUMNS, like).fetchall():
        if column not in have:
            conn.execute(sql.add_column(schema, name, column, type_name))
        elif have[column] != type_name:
            target = catalog_column_type(type_name)
            change = widening(have[column], target) if target else None
            using = change[1] if change else None
            conn.execute(sql.alter_column_type(schema, name, column, type_name, using))
    return True
