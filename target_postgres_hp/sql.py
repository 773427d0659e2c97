"""All SQL text of the target, composed with psycopg.sql so no name or value can inject SQL."""

from __future__ import annotations

import json
from collections.abc import Sequence

from psycopg import sql

from target_postgres_hp import winner
from target_postgres_hp.casting import null_stand_in

#: The columns a COPY into a raw table fills; `_airbyte_loaded_at` is NULL until typed.
RAW_COPY_COLUMNS = (
    "_airbyte_raw_id",
    "_airbyte_extracted_at",
    "_airbyte_loaded_at",
    "_airbyte_data",
    "_airbyte_meta",
    "_airbyte_generation_id",
)

#: The `_airbyte_` columns of a final table, after the property columns.
FINAL_META_COLUMNS = (
    "_airbyte_raw_id",
    "_airbyte_extracted_at",
    "_airbyte_meta",
    "_airbyte_generation_id",
)


def session_setup(search_path: Sequence[str]) -> sql.Composed:
    """UTC, ISO dates and the configured schemas, for every connection."""
    return sql.SQL("SET TIME ZONE 'UTC'; SET DateStyle TO ISO, MDY; SET search_path TO {}").format(
        sql.SQL(", ").join(sql.Identifier(name) for name in search_path)
    )


SCHEMA_EXISTS = sql.SQL("SELECT 1 FROM pg_namespace WHERE nspname = %s")


def create_schema(schema: str) -> sql.Composed:
    """Create a schema unless it exists."""
    return sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema))


def create_raw_table(schema: str, table: str, primary_key: str, untyped_index: str) -> sql.Composed:
    """The raw table: the primary key, plus one partial index that finds untyped rows."""
    return sql.SQL(
        "CREATE TABLE IF NOT EXISTS {table} ("
        " _airbyte_raw_id VARCHAR CONSTRAINT {primary_key} PRIMARY KEY,"
        " _airbyte_extracted_at TIMESTAMP WITH TIME ZONE NOT NULL,"
        " _airbyte_loaded_at TIMESTAMP WITH TIME ZONE,"
        " _airbyte_data JSONB NOT NULL,"
        " _airbyte_meta JSONB NOT NULL,"
        " _airbyte_generation_id BIGINT NOT NULL DEFAULT 0"
        "); "
        "CREATE INDEX IF NOT EXISTS {index} ON {table} (_airbyte_extracted_at)"
        " WHERE _airbyte_loaded_at IS NULL"
    ).format(
        table=sql.Identifier(schema, table),
        primary_key=sql.Identifier(primary_key),
        index=sql.Identifier(untyped_index),
    )


SCHEMA_PRIVILEGES = sql.SQL(
    "SELECT n.oid IS NOT NULL,"
    " coalesce(has_schema_privilege(n.oid, 'CREATE'), false),"
    " coalesce(has_schema_privilege(n.oid, 'USAGE'), false),"
    " has_database_privilege(current_database(), 'CREATE'),"
    " has_database_privilege(current_database(), 'TEMPORARY'),"
    " current_user, current_database()"
    " FROM (SELECT %s::text AS name) AS wanted"
    " LEFT JOIN pg_namespace AS n ON n.nspname = wanted.name"
)


def comment_on_table(schema: str, table: str, comment: str) -> sql.Composed:
    """Record which stream a table was made for."""
    return sql.SQL("COMMENT ON TABLE {} IS {}").format(
        sql.Identifier(schema, table), sql.Literal(comment)
    )


def comment_on_column(schema: str, table: str, column: str, comment: str) -> sql.Composed:
    """Record which property a column was made for."""
    return sql.SQL("COMMENT ON COLUMN {} IS {}").format(
        sql.Identifier(schema, table, column), sql.Literal(comment)
    )


#: Tables (and views) of a schema with their comments.
SCHEMA_TABLES = sql.SQL(
    "SELECT c.relname, obj_description(c.oid, 'pg_class')"
    " FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace"
    " WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'v', 'm', 'f')"
)

#: Tables other than in two schemas (`%s`: the stream's final schema and the raw schema)
#: whose comment (`%s`, first) records them as a stream's final table.
FINAL_TABLES_OF_STREAM = sql.SQL(
    "SELECT n.nspname, c.relname"
    " FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace"
    " WHERE c.relkind IN ('r', 'p') AND obj_description(c.oid, 'pg_class') = %s"
    " AND n.nspname <> %s AND n.nspname <> %s ORDER BY 1, 2"
)


def move_rows_of(
    schema: str, table: str, to_schema: str, to_table: str, of_schema: str, of_table: str
) -> sql.Composed:
    """Move from `table` to `to_table` (same columns) the rows whose raw id is in `of_table`."""
    return sql.SQL(
        "WITH moved AS (DELETE FROM {source} WHERE _airbyte_raw_id IN"
        " (SELECT _airbyte_raw_id FROM {owner}) RETURNING *)"
        " INSERT INTO {target} SELECT * FROM moved"
    ).format(
        source=sql.Identifier(schema, table),
        owner=sql.Identifier(of_schema, of_table),
        target=sql.Identifier(to_schema, to_table),
    )


#: Columns of a table in order, with their type and comment.
TABLE_COLUMNS = sql.SQL(
    "SELECT a.attname, format_type(a.atttypid, a.atttypmod), col_description(c.oid, a.attnum)"
    " FROM pg_attribute AS a"
    " JOIN pg_class AS c ON c.oid = a.attrelid"
    " JOIN pg_namespace AS n ON n.oid = c.relnamespace"
    " WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped"
    " ORDER BY a.attnum"
)


def create_final_table(schema: str, table: str, columns: Sequence[tuple[str, str]]) -> sql.Composed:
    """A final table: the property columns (name, SQL type), then the `_airbyte_` columns."""
    definitions: list[sql.Composable] = [
        sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(type_sql))
        for name, type_sql in columns
    ]
    definitions += [
        sql.SQL("_airbyte_raw_id VARCHAR NOT NULL"),
        sql.SQL("_airbyte_extracted_at TIMESTAMP WITH TIME ZONE NOT NULL"),
        sql.SQL("_airbyte_meta JSONB NOT NULL"),
        sql.SQL("_airbyte_generation_id BIGINT"),
    ]
    return sql.SQL("CREATE TABLE {} ({})").format(
        sql.Identifier(schema, table), sql.SQL(", ").join(definitions)
    )


def add_column(schema: str, table: str, column: str, type_sql: str) -> sql.Composed:
    """A new nullable column for a new property."""
    return sql.SQL("ALTER TABLE {} ADD COLUMN {} {}").format(
        sql.Identifier(schema, table), sql.Identifier(column), sql.SQL(type_sql)
    )


def copy_into(schema: str, table: str, columns: Sequence[str]) -> sql.Composed:
    """COPY rows into the named columns of a table."""
    return sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(schema, table),
        sql.SQL(", ").join(sql.Identifier(column) for column in columns),
    )


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


def comment_on_index(schema: str, index: str, comment: str) -> sql.Composed:
    """Record which key an index was made for."""
    return sql.SQL("COMMENT ON INDEX {} IS {}").format(
        sql.Identifier(schema, index), sql.Literal(comment)
    )


def drop_index(schema: str, index: str) -> sql.Composed:
    """Drop an index the stream no longer uses."""
    return sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(schema, index))


#: The comment of a relation (`%s` schema, `%s` name, `%s` relkinds, e.g. ['i']), if it exists.
RELATION_COMMENT = sql.SQL(
    "SELECT obj_description(c.oid, 'pg_class')"
    " FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace"
    " WHERE n.nspname = %s AND c.relname = %s AND c.relkind::text = ANY(%s)"
)

#: Relation kinds for RELATION_COMMENT.
INDEX_KINDS = ["i"]
TABLE_KINDS = ["r", "p"]


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


def create_staging_table(staging: str, schema: str, table: str) -> sql.Composed:
    """A transaction-private table shaped like the final table as it is now."""
    return sql.SQL("CREATE TEMPORARY TABLE {} (LIKE {}) ON COMMIT DROP").format(
        sql.Identifier(staging), sql.Identifier(schema, table)
    )


def create_winners_table(
    winners: str, staging: str, keys: Sequence[str], cursor: str | None
) -> sql.Composed:
    """The staged batch reduced to its winner per key, as a transaction-private table."""
    return sql.SQL(
        "CREATE TEMPORARY TABLE {winners} ON COMMIT DROP AS"
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


SAVEPOINT = sql.SQL("SAVEPOINT target_postgres_hp_batch")
RELEASE_SAVEPOINT = sql.SQL("RELEASE SAVEPOINT target_postgres_hp_batch")
ROLLBACK_TO_SAVEPOINT = sql.SQL("ROLLBACK TO SAVEPOINT target_postgres_hp_batch")


def alter_column_type(
    schema: str, table: str, column: str, type_sql: str, using: str
) -> sql.Composed:
    """Change a column's type in place; `using` converts the current values (`{}` is the
    column)."""
    return sql.SQL("ALTER TABLE {} ALTER COLUMN {} TYPE {} USING {}").format(
        sql.Identifier(schema, table),
        sql.Identifier(column),
        sql.SQL(type_sql),
        sql.SQL(using).format(sql.Identifier(column)),
    )


def create_table_like(
    schema: str, table: str, like_schema: str, like: str, *, if_missing: bool = False
) -> sql.Composed:
    """A table with the columns of another (no indexes, no comments)."""
    create = sql.SQL("CREATE TABLE IF NOT EXISTS" if if_missing else "CREATE TABLE")
    return sql.SQL("{} {} (LIKE {})").format(
        create, sql.Identifier(schema, table), sql.Identifier(like_schema, like)
    )


def drop_table(schema: str, table: str) -> sql.Composed:
    """Drop a table of the target's own (a load side table) if it exists."""
    return sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(schema, table))


def truncate(schema: str, table: str) -> sql.Composed:
    """Empty a table inside the current transaction."""
    return sql.SQL("TRUNCATE TABLE {}").format(sql.Identifier(schema, table))


def delete_all(schema: str, table: str) -> sql.Composed:
    """Empty a table row by row (where TRUNCATE is refused, e.g. a foreign key points at it)."""
    return sql.SQL("DELETE FROM {}").format(sql.Identifier(schema, table))


def insert_from(
    schema: str, table: str, source_schema: str, source: str, columns: Sequence[str]
) -> sql.Composed:
    """Copy every row of `source` into `table`, column by column."""
    column_list = sql.SQL(", ").join(sql.Identifier(column) for column in columns)
    return sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {}").format(
        sql.Identifier(schema, table),
        column_list,
        column_list,
        sql.Identifier(source_schema, source),
    )


def delete_raw_before(schema: str, table: str) -> sql.Composed:
    """Remove the raw rows of earlier loads: ids are time-ordered, so those made before the
    current load's first id (`%s`) belong to earlier loads."""
    return sql.SQL("DELETE FROM {} WHERE _airbyte_raw_id < %s").format(
        sql.Identifier(schema, table)
    )


def delete_other_generations(schema: str, table: str) -> sql.Composed:
    """Keep only the rows of one Singer table version (`%s`), for ACTIVATE_VERSION."""
    return sql.SQL("DELETE FROM {} WHERE _airbyte_generation_id IS DISTINCT FROM %s").format(
        sql.Identifier(schema, table)
    )


#: Views (and rules) that depend, directly or through other views, on some columns (`%s`, a
#: name array; a whole-row reference counts) of a table (`%s` schema, `%s` name): oid, schema,
#: name, relkind, depth (1 = on the table itself), whether the current role may drop it (is a
#: member of its owner), owner name, and whether it carries triggers or rules of its own.
DEPENDENT_VIEWS = sql.SQL(
    "WITH RECURSIVE target AS ("
    "  SELECT c.oid FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace"
    "  WHERE n.nspname = %(schema)s AND c.relname = %(table)s"
    "), dependent(oid, depth) AS ("
    "  SELECT DISTINCT r.ev_class, 1"
    "  FROM target AS t"
    "  JOIN pg_depend AS d ON d.refobjid = t.oid AND d.refclassid = 'pg_class'::regclass"
    "   AND d.classid = 'pg_rewrite'::regclass"
    "  JOIN pg_rewrite AS r ON r.oid = d.objid"
    "  WHERE r.ev_class <> t.oid AND (d.refobjsubid = 0 OR d.refobjsubid IN ("
    "   SELECT a.attnum FROM pg_attribute AS a"
    "   WHERE a.attrelid = t.oid AND a.attname = ANY(%(columns)s)))"
    "  UNION"
    "  SELECT DISTINCT r.ev_class, dependent.depth + 1"
    "  FROM dependent"
    "  JOIN pg_depend AS d ON d.refobjid = dependent.oid AND d.refclassid = 'pg_class'::regclass"
    "   AND d.classid = 'pg_rewrite'::regclass"
    "  JOIN pg_rewrite AS r ON r.oid = d.objid"
    "  WHERE r.ev_class <> dependent.oid AND dependent.depth < 64"
    ")"
    " SELECT c.oid, n.nspname, c.relname, c.relkind, max(dependent.depth),"
    "  pg_has_role(c.relowner, 'MEMBER'), pg_get_userbyid(c.relowner),"
    "  EXISTS (SELECT 1 FROM pg_trigger AS g WHERE g.tgrelid = c.oid)"
    "  OR EXISTS (SELECT 1 FROM pg_rewrite AS w WHERE w.ev_class = c.oid"
    "   AND w.rulename <> '_RETURN')"
    " FROM dependent JOIN pg_class AS c ON c.oid = dependent.oid"
    " JOIN pg_namespace AS n ON n.oid = c.relnamespace"
    " GROUP BY c.oid, n.nspname, c.relname, c.relkind"
    " ORDER BY max(dependent.depth), n.nspname, c.relname"
)

#: Which of some relations (`%s`, an oid array) each of them depends on: (child, parent).
VIEW_PARENTS = sql.SQL(
    "SELECT DISTINCT r.ev_class, d.refobjid FROM pg_rewrite AS r"
    " JOIN pg_depend AS d ON d.objid = r.oid AND d.classid = 'pg_rewrite'::regclass"
    "  AND d.refclassid = 'pg_class'::regclass"
    " WHERE r.ev_class = ANY(%s::oid[]) AND d.refobjid <> r.ev_class"
)

#: What recreating a view needs (`%s`, its oid): definition, options, comment.
VIEW_DEFINITION = sql.SQL(
    "SELECT pg_get_viewdef(c.oid), c.reloptions, obj_description(c.oid, 'pg_class')"
    " FROM pg_class AS c WHERE c.oid = %s"
)

#: A view's column comments (`%s`, its oid): column name, comment.
VIEW_COLUMN_COMMENTS = sql.SQL(
    "SELECT a.attname, col_description(a.attrelid, a.attnum) FROM pg_attribute AS a"
    " WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped"
    " AND col_description(a.attrelid, a.attnum) IS NOT NULL ORDER BY a.attnum"
)

#: A relation's grants to others (`%s`, its oid): grantee (NULL for PUBLIC), privilege,
#: grantable.
VIEW_GRANTS = sql.SQL(
    "SELECT CASE WHEN g.grantee = 0 THEN NULL ELSE pg_get_userbyid(g.grantee) END,"
    " g.privilege_type, g.is_grantable"
    " FROM pg_class AS c, aclexplode(c.relacl) AS g"
    " WHERE c.oid = %s AND g.grantee <> c.relowner"
)


def drop_views(views: Sequence[tuple[str, str]]) -> sql.Composed:
    """Drop views that will be recreated, in one statement (their order does not matter)."""
    return sql.SQL("DROP VIEW {}").format(
        sql.SQL(", ").join(sql.Identifier(schema, name) for schema, name in views)
    )


def drop_cascade(kind: str, schema: str, name: str) -> sql.Composed:
    """Drop a dependent object and everything that depends on it (`drop_cascade`)."""
    return sql.SQL("DROP {} IF EXISTS {} CASCADE").format(
        sql.SQL(kind), sql.Identifier(schema, name)
    )


def create_view(
    schema: str, name: str, definition: str, options: Sequence[tuple[str, str]]
) -> sql.Composed:
    """Recreate a view from its saved definition and options."""
    with_options: sql.Composable = sql.SQL("")
    if options:
        with_options = sql.SQL(" WITH ({})").format(
            sql.SQL(", ").join(
                sql.SQL("{} = {}").format(sql.Identifier(key), sql.Literal(value))
                for key, value in options
            )
        )
    return sql.SQL("CREATE VIEW {}{} AS {}").format(
        sql.Identifier(schema, name), with_options, sql.SQL(definition.rstrip().rstrip(";"))
    )


def comment_on_view(schema: str, name: str, comment: str) -> sql.Composed:
    """Restore a view's comment."""
    return sql.SQL("COMMENT ON VIEW {} IS {}").format(
        sql.Identifier(schema, name), sql.Literal(comment)
    )


def grant_on(
    schema: str, name: str, privilege: str, grantee: str | None, *, grantable: bool
) -> sql.Composed:
    """Restore one grant on a relation."""
    return sql.SQL("GRANT {} ON {} TO {}{}").format(
        sql.SQL(privilege),
        sql.Identifier(schema, name),
        sql.SQL("PUBLIC") if grantee is None else sql.Identifier(grantee),
        sql.SQL(" WITH GRANT OPTION" if grantable else ""),
    )


def alter_view_owner(schema: str, name: str, owner: str) -> sql.Composed:
    """Give a recreated view back to its owner."""
    return sql.SQL("ALTER VIEW {} OWNER TO {}").format(
        sql.Identifier(schema, name), sql.Identifier(owner)
    )


def has_rows(schema: str, table: str) -> sql.Composed:
    """One row if the table has any."""
    return sql.SQL("SELECT 1 FROM {} LIMIT 1").format(sql.Identifier(schema, table))


def count_rows(schema: str, table: str) -> sql.Composed:
    """How many rows a table holds."""
    return sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, table))


#: The first half of the target's advisory lock keys; the second is `hashtext` of the locked
#: name. Two-integer keys and hashtext work on every PostgreSQL from 9.5.
LOCK_CLASS = 0x68700001
TRY_LOCK = sql.SQL("SELECT pg_try_advisory_lock(%s, hashtext(%s))")
LOCK = sql.SQL("SELECT pg_advisory_lock(%s, hashtext(%s))")


#: Of the backends `%s` (an int array), those waiting for a lock: the waiting pid, the relation
#: it waits for (if a table's), and per session holding it: pid, application, user, and since
#: when its transaction runs (NULL where the role may not see another role's sessions).
LOCK_WAITS = sql.SQL(
    "SELECT w.pid,"
    " (SELECT format('%%I.%%I', n.nspname, c.relname) FROM pg_locks AS l"
    "  JOIN pg_class AS c ON c.oid = l.relation JOIN pg_namespace AS n ON n.oid = c.relnamespace"
    "  WHERE l.pid = w.pid AND NOT l.granted LIMIT 1),"
    " b.pid, a.application_name, a.usename, a.xact_start"
    " FROM unnest(%s::int[]) AS w(pid)"
    " CROSS JOIN LATERAL unnest(pg_blocking_pids(w.pid)) AS b(pid)"
    " LEFT JOIN pg_stat_activity AS a ON a.pid = b.pid"
    " ORDER BY 1, 3"
)
#: End the statement a backend of the run waits in (`%s`: its pid).
CANCEL_BACKEND = sql.SQL("SELECT pg_cancel_backend(%s)")


def set_lock_timeout(milliseconds: int) -> sql.Composed:
    """How long the session waits for a lock."""
    return sql.SQL("SET lock_timeout = {}").format(sql.Literal(milliseconds))


def untyped_raw_rows(schema: str, table: str) -> sql.Composed:
    """The next raw rows not yet typed into the final table, oldest first: after the raw id
    `%s` (keyset paging), at most `%s` of them."""
    return sql.SQL(
        "SELECT _airbyte_raw_id, _airbyte_extracted_at, _airbyte_data::text,"
        " _airbyte_meta::text, _airbyte_generation_id FROM {}"
        " WHERE _airbyte_loaded_at IS NULL AND _airbyte_raw_id > %s"
        " ORDER BY _airbyte_raw_id LIMIT %s"
    ).format(sql.Identifier(schema, table))


def mark_typed(schema: str, table: str) -> sql.Composed:
    """Record that raw rows (`%s`, an id array) are now in the final table."""
    return sql.SQL(
        "UPDATE {} SET _airbyte_loaded_at = now() WHERE _airbyte_raw_id = ANY(%s)"
    ).format(sql.Identifier(schema, table))


def has_untyped(schema: str, table: str) -> sql.Composed:
    """One row if a raw table holds a row not yet typed (through its partial index)."""
    return sql.SQL("SELECT 1 FROM {} WHERE _airbyte_loaded_at IS NULL LIMIT 1").format(
        sql.Identifier(schema, table)
    )


def first_raw_id_of_generation(schema: str, table: str) -> sql.Composed:
    """The oldest raw id of one Singer table version (`%s`) in a raw table (NULL if none)."""
    return sql.SQL("SELECT min(_airbyte_raw_id) FROM {} WHERE _airbyte_generation_id = %s").format(
        sql.Identifier(schema, table)
    )


def other_generation(schema: str, table: str) -> sql.Composed:
    """One row if the table holds a row of another Singer table version than `%s`."""
    return sql.SQL(
        "SELECT 1 FROM {} WHERE _airbyte_generation_id IS DISTINCT FROM %s LIMIT 1"
    ).format(sql.Identifier(schema, table))
