"""Views that depend on a table: finding them, and dropping and recreating them with their
options, comments, grants and owner around a change of the table."""

from __future__ import annotations

from collections.abc import Sequence

from psycopg import sql

from target_postgres_hp.sql.catalog import comment_on

#: Views (and rules) that depend, directly or through other views, on some columns (`%s`, a
#: name array; a whole-row reference counts) of a table (`%s` schema, `%s` name): oid, schema,
#: name, relkind, depth (1 = on the table itself), whether the current role owns it (is a
#: member of its owner), owner name, whether it carries triggers or rules of its own, and
#: whether the current role may drop it (owns it or its schema; what CASCADE then drops with
#: it is not checked).
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
    "   AND w.rulename <> '_RETURN'),"
    "  pg_has_role(c.relowner, 'MEMBER') OR pg_has_role(n.nspowner, 'MEMBER')"
    " FROM dependent JOIN pg_class AS c ON c.oid = dependent.oid"
    " JOIN pg_namespace AS n ON n.oid = c.relnamespace"
    " GROUP BY c.oid, n.nspname, n.nspowner, c.relname, c.relkind"
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
    return comment_on("VIEW", sql.Identifier(schema, name), comment)


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


def grant_role(role: str, member: str) -> sql.Composed:
    """Make `member` a member of `role` (the fix a refusal names; the target never runs it)."""
    return sql.SQL("GRANT {} TO {}").format(sql.Identifier(role), sql.Identifier(member))


def alter_view_owner(schema: str, name: str, owner: str) -> sql.Composed:
    """Give a recreated view back to its owner."""
    return sql.SQL("ALTER VIEW {} OWNER TO {}").format(
        sql.Identifier(schema, name), sql.Identifier(owner)
    )
