"""Schemas and the catalog: what exists, what the role may do, the comments that record
which stream or property a table, column or index was made for."""

from __future__ import annotations

from psycopg import sql

SCHEMA_EXISTS = sql.SQL("SELECT 1 FROM pg_namespace WHERE nspname = %s")


def create_schema(schema: str) -> sql.Composed:
    """Create a schema unless it exists."""
    return sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema))


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


def comment_on(kind: str, name: sql.Identifier, comment: str) -> sql.Composed:
    """Set the comment of an object of a kind (TABLE, COLUMN, INDEX, VIEW)."""
    return sql.SQL("COMMENT ON {} {} IS {}").format(sql.SQL(kind), name, sql.Literal(comment))


def comment_on_table(schema: str, table: str, comment: str) -> sql.Composed:
    """Record which stream a table was made for."""
    return comment_on("TABLE", sql.Identifier(schema, table), comment)


def comment_on_column(schema: str, table: str, column: str, comment: str) -> sql.Composed:
    """Record which property a column was made for."""
    return comment_on("COLUMN", sql.Identifier(schema, table, column), comment)


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


#: Columns of a table in order, with their type and comment.
TABLE_COLUMNS = sql.SQL(
    "SELECT a.attname, format_type(a.atttypid, a.atttypmod), col_description(c.oid, a.attnum)"
    " FROM pg_attribute AS a"
    " JOIN pg_class AS c ON c.oid = a.attrelid"
    " JOIN pg_namespace AS n ON n.oid = c.relnamespace"
    " WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped"
    " ORDER BY a.attnum"
)


def comment_on_index(schema: str, index: str, comment: str) -> sql.Composed:
    """Record which key an index was made for."""
    return comment_on("INDEX", sql.Identifier(schema, index), comment)


#: The comment of a relation (`%s` schema, `%s` name, `%s` relkinds, e.g. ['i']), if it exists.
RELATION_COMMENT = sql.SQL(
    "SELECT obj_description(c.oid, 'pg_class')"
    " FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace"
    " WHERE n.nspname = %s AND c.relname = %s AND c.relkind::text = ANY(%s)"
)


#: Relation kinds for RELATION_COMMENT.
INDEX_KINDS = ["i"]
TABLE_KINDS = ["r", "p"]
