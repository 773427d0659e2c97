"""Which table belongs to which stream: what the target records in its tables' comments (the
stream, the final table a raw table serves, the helper tables' owners) and how a stream finds
its raw and final tables from them whatever settings earlier runs used (SPEC §4.1, §5)."""

from __future__ import annotations

import json
import logging

from target_postgres_hp import sql
from target_postgres_hp.loading import PgConnection
from target_postgres_hp.naming import (
    assign_names,
    derived_name,
    raw_table_name,
    shown_name,
    suffixed_from,
)

logger = logging.getLogger("target-postgres-hp.connector")

#: Comment keys of the target's helper tables: a full refresh's side table, a stream's
#: tombstones (hard-deleted keys).
LOAD_OF = "load_of"
DELETES_OF = "deletes_of"
#: The suffix of a stream's removed-keys table, after its raw table's name.
DELETES_SUFFIX = "_deletes"


def comment_value(comment: str | None, key: str) -> str | None:
    """The source name this target recorded in an object's comment, if any."""
    if not comment:
        return None
    try:
        parsed = json.loads(comment)
    except ValueError:
        return None
    value = parsed.get(key) if isinstance(parsed, dict) else None
    return value if isinstance(value, str) else None


def companion_owner(comment: str | None) -> str | None:
    """A marker owner for the target's own helper tables (load side tables, tombstones), so no
    stream ever adopts one as its table."""
    for key in (LOAD_OF, DELETES_OF):
        stream = comment_value(comment, key)
        if stream is not None:
            return f"\x00{key}:{stream}"
    return None


def raw_owner_key(final_schema: str, final_name: str, stream: str) -> str:
    """What a raw table belongs to: the final table of `stream` in `final_schema` named after
    `final_name` (before any collision suffix), so one final table (SPEC §4.1)."""
    return f"{final_schema}\x00{final_name}\x00{stream}"


def comment_json(recorded: dict[str, str]) -> str:
    """What the target records in an object's comment, as JSON: readable Unicode, or escapes
    where a name holds a lone surrogate (which a comment, being UTF-8, cannot)."""
    text = json.dumps(recorded, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(recorded)
    return text


def comment_of(key: str, value: str) -> str:
    return comment_json({key: value})


def table_for_stream(
    conn: PgConnection, schema: str, conformed: str, stream: str
) -> tuple[str, str | None]:
    """The table of `stream` in `schema` that is named after `conformed`: the one recorded
    for it, else `conformed` unless another stream's table has that name, else `conformed`
    with a suffix (SPEC §5); and the stream holding `conformed`, if a stream does.

    A table of the stream named after another name (made under other naming settings,
    e.g. another `stream_prefix`) is left to those settings."""
    owners: dict[str, str | None] = {}
    for name, comment in conn.execute(sql.SCHEMA_TABLES, (schema,)).fetchall():
        owner = comment_value(comment, "stream")
        if owner == stream and not suffixed_from(name, conformed):
            owner = f"\x00other name:{stream}"
        # The empty stream name is a stream too: only a table recording none is nobody's.
        owners[name] = owner if owner is not None else companion_owner(comment)
    table = assign_names([(stream, conformed)], owners, frozenset())[stream]
    holder = owners.get(conformed)
    # Markers (helper tables, other names of this stream) start with NUL: no stream.
    return table, holder if holder is not None and not holder.startswith("\x00") else None


def raw_table_of(
    conn: PgConnection,
    schema: str,
    conformed: str,
    stream: str,
    final_schema: str,
    final_name: str,
    *,
    what: str = "its raw table",
) -> tuple[str, bool]:
    """The raw table in `schema` of the final table of `stream` in `final_schema` named
    after `final_name`, and whether it is a table the oldest versions made, which recorded
    only its stream and may hold other final tables' raw rows. (In the direct layout, the
    name its helper tables derive from: `what` says which, for the log.)"""
    me = raw_owner_key(final_schema, final_name, stream)
    owners: dict[str, str | None] = {}
    #: Names the removed-keys tables claim (the direct layout makes them without a raw
    #: table): a name whose `_deletes` table is another stream's is not free.
    claimed: dict[str, str] = {}
    shared: set[str] = set()
    for name, comment in conn.execute(sql.SCHEMA_TABLES, (schema,)).fetchall():
        recorded = comment_value(comment, "stream")
        owner_schema = comment_value(comment, "final_schema")
        owner_name = comment_value(comment, "final_name")
        if recorded is None:
            owners[name] = companion_owner(comment)
            deletes_of = comment_value(comment, DELETES_OF)
            if deletes_of is not None and name.endswith(DELETES_SUFFIX):
                base = name.removesuffix(DELETES_SUFFIX)
                mine = deletes_of == stream and suffixed_from(base, conformed)
                claimed[base] = me if mine else f"\x00{DELETES_OF}:{base}"
        elif owner_schema is not None and owner_name is not None:
            owners[name] = raw_owner_key(owner_schema, owner_name, recorded)
        elif (recorded, owner_schema) == (stream, final_schema) and suffixed_from(name, conformed):
            owners[name] = me
        elif recorded == stream and owner_schema is None and name == conformed:
            owners[name] = me
            shared.add(name)
        else:
            owners[name] = f"\x00earlier:{name}"
    for base, owner in claimed.items():
        owners.setdefault(base, owner)
    table = assign_names([(me, conformed)], owners, frozenset())[me]
    if table != conformed:
        logger.warning(
            "Stream %s (final table %s.%s) has %s %s.%s because %s is taken by another final table",
            shown_name(stream),
            final_schema,
            final_name,
            what,
            schema,
            table,
            conformed,
        )
    return table, table in shared


def create_raw_table(
    conn: PgConnection,
    schema: str,
    table: str,
    stream: str,
    final_schema: str,
    final_name: str,
) -> None:
    primary_key = derived_name(table, "pkey")
    index = derived_name(table, "untyped")
    conn.execute(sql.create_raw_table(schema, table, primary_key, index))
    owner = comment_json({"stream": stream, "final_schema": final_schema, "final_name": final_name})
    conn.execute(sql.comment_on_table(schema, table, owner))


def split_shared_raw(
    conn: PgConnection,
    schema: str,
    table: str,
    stream: str,
    final_schema: str,
    table_text: str,
) -> None:
    """Give back to their own raw tables the raw rows of other final tables of `stream`
    that an earlier version wrote into this one (it found raw tables by stream name only,
    so a stream loaded with two `schema` settings shared one). A row belongs to the final
    table holding its raw id; the stream's tombstones are split the same way."""
    others = conn.execute(
        sql.FINAL_TABLES_OF_STREAM, (comment_of("stream", stream), final_schema, schema)
    ).fetchall()
    for other_schema, other_table in others:
        moved_to = None
        # Versions that shared raw tables named final tables after the stream alone.
        conformed = raw_table_name(other_schema, table_text)
        other, _ = raw_table_of(conn, schema, conformed, stream, other_schema, other_table)
        create_raw_table(conn, schema, other, stream, other_schema, other_table)
        moved = conn.execute(
            sql.move_rows_of(schema, table, schema, other, other_schema, other_table)
        ).rowcount
        if moved:
            moved_to = other
        tombstones = derived_name(table, "deletes")
        if conn.execute(sql.RELATION_COMMENT, (schema, tombstones, sql.TABLE_KINDS)).fetchone():
            other_tombstones = derived_name(other, "deletes")
            conn.execute(
                sql.create_table_like(schema, other_tombstones, schema, tombstones, if_missing=True)
            )
            conn.execute(
                sql.comment_on_table(schema, other_tombstones, comment_of(DELETES_OF, stream))
            )
            conn.execute(
                sql.move_rows_of(schema, tombstones, schema, other_tombstones, schema, other)
            )
        if moved_to is not None:
            logger.warning(
                "Raw table %s.%s also held %s raw rows of %s.%s (an earlier version let the"
                " two final tables of stream %s share it); they are moved to that table's"
                " own raw table %s.%s",
                schema,
                table,
                moved,
                other_schema,
                other_table,
                stream,
                schema,
                moved_to,
            )
