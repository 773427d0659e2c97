"""Deduplicated loads (SPEC §6.3): the key index, the staged batch and its winners, the
upsert, recorded deletes (tombstones), and the winner rule applied to a whole table."""

from __future__ import annotations

import json
from collections.abc import Sequence

from psycopg import sql

from target_postgres_hp import winner
from target_postgres_hp.casting import null_stand_in


def key_terms(keys: Sequence[str], types: Sequence[str] | None = None) -> sql.Composed:
    """The terms of a key index, which are also the ON CONFLICT target: the key columns (for
    an index with NULLS NOT DISTINCT, PostgreSQL 15+), or, given the columns' types (older
    servers), `COALESCE(k, stand-in)` and `(k IS NULL)` per key column of a known type."""
    terms: list[sql.Composable] = []
    for position, key in enumerate(keys):
        column = sql.Identifier(key)
        stand_in = None if types is None else null_stand_in(types[position])
        if stand_in is None:
            terms.append(column)
        else:
            terms.append(sql.SQL("(COALESCE({}, {}))").format(column, sql.SQL(stand_in)))
            terms.append(sql.SQL("(({} IS NULL))").format(column))
    return sql.SQL(", ").join(terms)


def create_unique_index(
    schema: str, table: str, index: str, terms: sql.Composable, *, nulls_equal: bool
) -> sql.Composed:
    """The unique index on a dedup stream's key (`key_terms`), used by the upsert. With
    `nulls_equal` (PostgreSQL 15+) NULL key components compare equal (SPEC §6.3)."""
    return sql.SQL("CREATE UNIQUE INDEX {} ON {} ({}){}").format(
        sql.Identifier(index),
        sql.Identifier(schema, table),
        terms,
        sql.SQL(" NULLS NOT DISTINCT" if nulls_equal else ""),
    )


def drop_index(schema: str, index: str) -> sql.Composed:
    """Drop an index the stream no longer uses."""
    return sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(schema, index))


def delete_key_losers(
    schema: str, table: str, keys: Sequence[str], cursor: str | None
) -> sql.Composed:
    """Leave one row per key in a table that had none (a key change): the winner of SPEC §6.3.
    Runs over the whole table, which only a change of key or load method asks for."""
    return sql.SQL(
        "DELETE FROM {table} WHERE ctid IN (SELECT ctid FROM (SELECT ctid,"
        " row_number() OVER (PARTITION BY {keys} ORDER BY {order}) AS place FROM {table})"
        " AS ranked WHERE place > 1)"
    ).format(
        table=sql.Identifier(schema, table),
        keys=sql.SQL(", ").join(sql.Identifier(key) for key in keys),
        order=winner.order_by([], cursor),
    )


#: Whether the session has a temporary table of that name: NULL when it has none.
TEMP_TABLE = sql.SQL("SELECT to_regclass(format('pg_temp.%%I', %s::text))")


def create_staging_table(staging: str, schema: str, table: str) -> sql.Composed:
    """The session's table a batch is staged in, shaped like the final table as it is now;
    emptied at each commit."""
    return sql.SQL("CREATE TEMPORARY TABLE {} (LIKE {}) ON COMMIT DELETE ROWS").format(
        sql.Identifier(staging), sql.Identifier(schema, table)
    )


def create_winners_table(winners: str, staging: str) -> sql.Composed:
    """The session's table of a staged batch's winners, shaped like the staging table;
    emptied at each commit."""
    return sql.SQL("CREATE TEMPORARY TABLE {} (LIKE pg_temp.{}) ON COMMIT DELETE ROWS").format(
        sql.Identifier(winners), sql.Identifier(staging)
    )


def fill_winners_table(
    winners: str, staging: str, keys: Sequence[str], cursor: str | None
) -> sql.Composed:
    """The staged batch reduced to its winner per key."""
    return sql.SQL(
        "INSERT INTO pg_temp.{winners}"
        " SELECT DISTINCT ON ({keys}) * FROM pg_temp.{staging} ORDER BY {order}"
    ).format(
        winners=sql.Identifier(winners),
        keys=sql.SQL(", ").join(sql.Identifier(key) for key in keys),
        staging=sql.Identifier(staging),
        order=winner.order_by(keys, cursor),
    )


def discard_beaten_by_tombstones(
    winners: str, schema: str, tombstones: str, keys: Sequence[str], cursor: str | None
) -> list[sql.Composed]:
    """Drop the batch winners that do not beat a recorded delete of their key, so an older
    record never brings a deleted key back (a record arriving after the delete, with the same
    cursor and extraction time, does). Two statements: keys without NULLs go through the
    tombstones' unique index; keys with NULL components compare with IS NOT DISTINCT FROM."""
    batch, dead = sql.Identifier("batch"), sql.Identifier("dead")
    loses = sql.SQL("NOT {}").format(winner.beats(batch, dead, cursor))
    equal = sql.SQL(" AND ").join(
        sql.SQL("dead.{k} = batch.{k}").format(k=sql.Identifier(key)) for key in keys
    )
    has_null = sql.SQL(" OR ").join(
        sql.SQL("batch.{} IS NULL").format(sql.Identifier(key)) for key in keys
    )
    not_distinct = sql.SQL(" AND ").join(
        sql.SQL("dead.{k} IS NOT DISTINCT FROM batch.{k}").format(k=sql.Identifier(key))
        for key in keys
    )
    statement = sql.SQL(
        "DELETE FROM pg_temp.{winners} AS batch USING {tombstones} AS dead"
        " WHERE {match} AND {loses}"
    )
    return [
        statement.format(
            winners=sql.Identifier(winners),
            tombstones=sql.Identifier(schema, tombstones),
            match=match,
            loses=loses,
        )
        for match in (equal, sql.SQL("({}) AND {}").format(has_null, not_distinct))
    ]


def is_delete(markers: Sequence[tuple[str, str]]) -> sql.Composed:
    """True for a row whose record set a deletion marker (column, property): the column holds
    a value, or typing NULLed the value the record gave (recorded in `_airbyte_meta`)."""
    return sql.SQL(" OR ").join(
        sql.SQL("{} IS NOT NULL OR _airbyte_meta->'changes' @> {}::jsonb").format(
            sql.Identifier(column), sql.Literal(json.dumps([{"field": prop}]))
        )
        for column, prop in markers
    )


def upsert_rows(
    source: sql.Composable,
    schema: str,
    table: str,
    columns: Sequence[str],
    conflict: sql.Composable,
    cursor: str | None,
    deleted: Sequence[tuple[str, str]] = (),
    vacated: Sequence[str] = (),
) -> sql.Composed:
    """Insert the rows `source` selects (at most one per key); a row whose key (`conflict`,
    the key index's terms) exists replaces it only if it wins (SPEC §6.3). The winner replaces
    the whole row: `vacated` columns, which no property of the current schema fills, become
    NULL. With `deleted` marker columns the statement returns the ctid of every written row
    that is a delete, for the caller to remove."""
    column_list = sql.SQL(", ").join(sql.Identifier(column) for column in columns)
    statement = sql.SQL(
        "INSERT INTO {target} AS {alias} ({columns}) SELECT {columns} FROM {source}"
        " ON CONFLICT ({keys}) DO UPDATE SET {assignments} WHERE {wins}"
    ).format(
        target=sql.Identifier(schema, table),
        alias=sql.Identifier(table),
        columns=column_list,
        source=source,
        keys=conflict,
        assignments=sql.SQL(", ").join(
            [
                *(
                    sql.SQL("{} = EXCLUDED.{}").format(
                        sql.Identifier(column), sql.Identifier(column)
                    )
                    for column in columns
                ),
                *(sql.SQL("{} = NULL").format(sql.Identifier(column)) for column in vacated),
            ]
        ),
        wins=winner.beats(sql.SQL("EXCLUDED"), sql.Identifier(table), cursor),
    )
    if not deleted:
        return statement
    marked = is_delete(deleted)
    return sql.SQL(
        "WITH written AS ({} RETURNING ctid, {} AS deleted)"
        " SELECT ctid::text FROM written WHERE deleted"
    ).format(statement, marked)


def distinct_winners(staging: str, keys: Sequence[str], cursor: str | None) -> sql.Composed:
    """A subquery: the staged batch reduced to its winner per key."""
    return sql.SQL(
        "(SELECT DISTINCT ON ({keys}) * FROM pg_temp.{staging} ORDER BY {order}) AS batch"
    ).format(
        keys=sql.SQL(", ").join(sql.Identifier(key) for key in keys),
        staging=sql.Identifier(staging),
        order=winner.order_by(keys, cursor),
    )


def temp_table(name: str) -> sql.Composed:
    """A transaction-private table as an upsert source."""
    return sql.SQL("pg_temp.{}").format(sql.Identifier(name))


def winners_where(winners: str, deleted: Sequence[tuple[str, str]]) -> sql.Composed:
    """The delete rows among the winners, as an upsert source."""
    return sql.SQL("pg_temp.{} WHERE {}").format(sql.Identifier(winners), is_delete(deleted))


def delete_by_ctid(schema: str, table: str) -> sql.Composed:
    """Remove the rows at the given ctids (`%s`, a text array)."""
    return sql.SQL("DELETE FROM {} WHERE ctid = ANY(%s::text[]::tid[])").format(
        sql.Identifier(schema, table)
    )
