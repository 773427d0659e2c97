"""The connector owns the database for the sinks: one SQLAlchemy engine over psycopg 3 whose
connections come from `connection.Database` (tunnel, TLS, session settings), plus the DDL and
COPY the sinks need. Bulk work uses the psycopg connection under SQLAlchemy's."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
import sqlalchemy as sa
from singer_sdk.sql import SQLConnector
from sqlalchemy.pool import PoolProxiedConnection

from target_postgres_hp import sql
from target_postgres_hp.casting import ColumnType, catalog_column_type, widening
from target_postgres_hp.config import Settings
from target_postgres_hp.connection import Database, check_schema, translate_privilege_error
from target_postgres_hp.dependents import dependents_set_aside
from target_postgres_hp.errors import DependentObjects, InternalError, StreamLocked
from target_postgres_hp.loading import PgConnection
from target_postgres_hp.lockwatch import LockWatch
from target_postgres_hp.naming import (
    assign_names,
    derived_name,
    final_identifier,
    raw_table_name,
    suffixed_from,
)

#: Comment keys of the target's helper tables: a full refresh's side table, a stream's
#: tombstones (hard-deleted keys).
LOAD_OF = "load_of"
DELETES_OF = "deletes_of"

#: Final-table columns no property may take (SPEC §5): the `_airbyte_` columns, and the
#: system columns every PostgreSQL table has (a column named `xmin` cannot be created).
RESERVED_COLUMNS = frozenset(
    [*sql.FINAL_META_COLUMNS, "tableoid", "xmin", "cmin", "xmax", "cmax", "ctid"]
)


def _recorded(comment: str | None, key: str) -> str | None:
    """The source name this target recorded in an object's comment, if any."""
    if not comment:
        return None
    try:
        parsed = json.loads(comment)
    except ValueError:
        return None
    value = parsed.get(key) if isinstance(parsed, dict) else None
    return value if isinstance(value, str) else None


def _companion_owner(comment: str | None) -> str | None:
    """A marker owner for the target's own helper tables (load side tables, tombstones), so no
    stream ever adopts one as its table."""
    for key in (LOAD_OF, DELETES_OF):
        stream = _recorded(comment, key)
        if stream is not None:
            return f"\x00{key}:{stream}"
    return None


@contextmanager
def _privileges_explained(action: str) -> Iterator[None]:
    """Turn a missing privilege into the one-sentence error that names the GRANT to run."""
    try:
        yield
    except psycopg.errors.InsufficientPrivilege as error:
        raise translate_privilege_error(error, action) from None


def _driver(handle: PoolProxiedConnection) -> PgConnection:
    """The psycopg connection under a pooled handle."""
    driver = handle.driver_connection
    if not isinstance(driver, psycopg.Connection):
        msg = "the engine must use the psycopg driver"
        raise InternalError(msg)
    return driver


def _raw_owner_key(final_schema: str, final_name: str, stream: str) -> str:
    """What a raw table belongs to: the final table of `stream` in `final_schema` named after
    `final_name` (before any collision suffix), so one final table (SPEC §4.1)."""
    return f"{final_schema}\x00{final_name}\x00{stream}"


def _comment_text(recorded: dict[str, str]) -> str:
    """What the target records in an object's comment, as JSON: readable Unicode, or escapes
    where a name holds a lone surrogate (which a comment, being UTF-8, cannot)."""
    text = json.dumps(recorded, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(recorded)
    return text


def _comment(key: str, value: str) -> str:
    return _comment_text({key: value})


@dataclass(frozen=True)
class FinalColumn:
    """A property's column in a final table."""

    prop: str
    name: str
    wanted: ColumnType
    catalog_type: str


logger = logging.getLogger("target-postgres-hp.connector")


class PostgresConnector(SQLConnector):
    """Connections and DDL for one run of the target."""

    allow_column_add = True
    allow_column_alter = True
    allow_merge_upsert = True
    allow_overwrite = True
    allow_temp_tables = True

    #: Sinks that may stream a batch at once; each holds two connections meanwhile.
    MAX_STREAMING_BATCHES = 8

    def __init__(self, settings: Settings, database: Database | None = None) -> None:
        super().__init__(config={}, sqlalchemy_url="postgresql+psycopg://")
        self.settings = settings
        self.database = database or Database(settings)
        self._prepared_schemas: set[str] = set()
        self._checked_schemas: set[str] = set()
        self._lock = threading.Lock()
        #: The pool's handles of the connections that sinks hold for streaming, by connection.
        self._checked_out: dict[int, PoolProxiedConnection] = {}
        self._pairs_out = 0
        self.server_version = 0
        #: The session holding this run's stream locks, and the names locked.
        self._lock_session: PgConnection | None = None
        self._locked: set[str] = set()
        #: Reports and bounds waits for other sessions' locks on every connection of the run.
        self.lock_watch = LockWatch(self.database.connect, settings.lock_wait_seconds)

    def _open_connection(self) -> PgConnection:
        """A new connection of the run, watched for lock waits."""
        conn = self.database.connect()
        self.lock_watch.watch(conn)
        return conn

    def create_engine(self) -> sa.Engine:
        """The run's one pool of connections, each opened by `Database.connect`: DDL and
        catalog reads take one for a statement or two, each streaming batch a pair (raw and
        final), kept open between batches."""
        return sa.create_engine(
            "postgresql+psycopg://",
            creator=self._open_connection,
            pool_pre_ping=True,
            pool_size=2 * self.MAX_STREAMING_BATCHES + 2,
            max_overflow=2,
        )

    @contextmanager
    def raw_connection(self) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
        """A pooled psycopg connection; the transaction is committed when the block ends
        without error and rolled back otherwise."""
        with self._engine.connect() as conn:
            driver = _driver(conn.connection)
            try:
                yield driver
            except BaseException:
                if driver.closed or driver.broken:
                    # The pool must not reset a lost connection (that fails too, noisily).
                    conn.invalidate()
                else:
                    driver.rollback()
                raise
            driver.commit()

    @contextmanager
    def _ddl(self, action: str) -> Iterator[PgConnection]:
        """A pooled connection for DDL, one statement of it at a time across the run's
        threads, with a missing privilege explained as `action` refused."""
        with _privileges_explained(action), self._lock, self.raw_connection() as conn:
            yield conn

    def prepare_schema(self, schema_name: str) -> None:
        """Create a schema once per run, naming the missing privilege if it cannot."""
        if schema_name in self._prepared_schemas:
            return
        with _privileges_explained(f"create schema {schema_name}"), self.raw_connection() as conn:
            # CREATE SCHEMA IF NOT EXISTS needs CREATE on the database even when the schema
            # exists: a role given only a schema made for it must not need it.
            if conn.execute(sql.SCHEMA_EXISTS, (schema_name,)).fetchone() is None:
                conn.execute(sql.create_schema(schema_name))
        self._prepared_schemas.add(schema_name)

    def check_schema(self, schema: str, stream: str) -> None:
        """Refuse, before any table of the stream is created, a final-table schema the role
        cannot create tables in, with the GRANT and the namespace settings that avoid it
        (SPEC §6.4). Each schema is checked once per run."""
        if schema in self._checked_schemas:
            return
        settings = self.settings
        avoid = (
            f"or choose another schema for stream {stream} (now {settings.schema_settings}):"
            " namespace_definition destination puts every table in the first schema, custom in"
            " namespace_format"
        )
        with self.raw_connection() as conn:
            check_schema(conn, schema, avoid, avoid_missing=avoid)
        self._checked_schemas.add(schema)

    def _table_for_stream(
        self, conn: PgConnection, schema: str, conformed: str, stream: str
    ) -> tuple[str, str | None]:
        """The table of `stream` in `schema` that is named after `conformed`: the one recorded
        for it, else `conformed` unless another stream's table has that name, else `conformed`
        with a suffix (SPEC §5); and the stream holding `conformed`, if a stream does.

        A table of the stream named after another name (made under other naming settings,
        e.g. another `stream_prefix`) is left to those settings."""
        owners: dict[str, str | None] = {}
        for name, comment in conn.execute(sql.SCHEMA_TABLES, (schema,)).fetchall():
            owner = _recorded(comment, "stream")
            if owner == stream and not suffixed_from(name, conformed):
                owner = f"\x00other name:{stream}"
            owners[name] = owner or _companion_owner(comment)
        table = assign_names([(stream, conformed)], owners, frozenset())[stream]
        holder = owners.get(conformed)
        # Markers (helper tables, other names of this stream) start with NUL: no stream.
        return table, holder if holder and not holder.startswith("\x00") else None

    def prepare_raw_table(
        self,
        schema: str,
        conformed: str,
        stream: str,
        final_schema: str,
        table_text: str,
    ) -> str:
        """Create the raw table of the final table of stream `stream` in `final_schema` named
        after `table_text` (and the raw schema) unless they exist; return its name.

        A raw table records in its comment its stream, its final table's schema and the
        conformed name that table is made from (`final_name`; the table itself may carry a
        collision suffix), so each final table has its own raw table whatever settings earlier
        runs used (SPEC §4.1), even while raw-only runs create no final table. Raw tables of
        earlier versions recorded less: one that recorded the stream and the final schema is
        adopted by the final table its name was made for; one that recorded only the stream is
        adopted by the final table whose raw name it has, and the raw rows of other final
        tables it holds are moved to their own raw tables first (`_split_shared_raw`).
        """
        self.prepare_schema(schema)
        with self._ddl(f"create table {schema}.{conformed}") as conn:
            final_name = final_identifier(table_text)
            table, shared = self._raw_table_of(
                conn, schema, conformed, stream, final_schema, final_name
            )
            self._create_raw_table(conn, schema, table, stream, final_schema, final_name)
            if shared:
                self._split_shared_raw(conn, schema, table, stream, final_schema, table_text)
        return table

    def _raw_table_of(
        self,
        conn: PgConnection,
        schema: str,
        conformed: str,
        stream: str,
        final_schema: str,
        final_name: str,
    ) -> tuple[str, bool]:
        """The raw table in `schema` of the final table of `stream` in `final_schema` named
        after `final_name`, and whether it is a table the oldest versions made, which recorded
        only its stream and may hold other final tables' raw rows."""
        me = _raw_owner_key(final_schema, final_name, stream)
        owners: dict[str, str | None] = {}
        shared: set[str] = set()
        for name, comment in conn.execute(sql.SCHEMA_TABLES, (schema,)).fetchall():
            recorded = _recorded(comment, "stream")
            owner_schema = _recorded(comment, "final_schema")
            owner_name = _recorded(comment, "final_name")
            if recorded is None:
                owners[name] = _companion_owner(comment)
            elif owner_schema is not None and owner_name is not None:
                owners[name] = _raw_owner_key(owner_schema, owner_name, recorded)
            elif (recorded, owner_schema) == (stream, final_schema) and suffixed_from(
                name, conformed
            ):
                owners[name] = me
            elif recorded == stream and owner_schema is None and name == conformed:
                owners[name] = me
                shared.add(name)
            else:
                owners[name] = f"\x00earlier:{name}"
        table = assign_names([(me, conformed)], owners, frozenset())[me]
        if table != conformed:
            logger.warning(
                "Stream %s (final table %s.%s) has its raw table %s.%s because %s is taken by"
                " another final table",
                stream,
                final_schema,
                final_name,
                schema,
                table,
                conformed,
            )
        return table, table in shared

    def _create_raw_table(
        self,
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
        owner = _comment_text(
            {"stream": stream, "final_schema": final_schema, "final_name": final_name}
        )
        conn.execute(sql.comment_on_table(schema, table, owner))

    def _split_shared_raw(
        self,
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
            sql.FINAL_TABLES_OF_STREAM, (_comment("stream", stream), final_schema, schema)
        ).fetchall()
        for other_schema, other_table in others:
            moved_to = None
            # Versions that shared raw tables named final tables after the stream alone.
            conformed = raw_table_name(other_schema, table_text)
            other, _ = self._raw_table_of(
                conn, schema, conformed, stream, other_schema, other_table
            )
            self._create_raw_table(conn, schema, other, stream, other_schema, other_table)
            moved = conn.execute(
                sql.move_rows_of(schema, table, schema, other, other_schema, other_table)
            ).rowcount
            if moved:
                moved_to = other
            tombstones = derived_name(table, "deletes")
            if conn.execute(sql.RELATION_COMMENT, (schema, tombstones, sql.TABLE_KINDS)).fetchone():
                other_tombstones = derived_name(other, "deletes")
                conn.execute(
                    sql.create_table_like(
                        schema, other_tombstones, schema, tombstones, if_missing=True
                    )
                )
                conn.execute(
                    sql.comment_on_table(schema, other_tombstones, _comment(DELETES_OF, stream))
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

    def prepare_final_table(
        self,
        schema: str,
        conformed: str,
        stream: str,
        properties: Sequence[tuple[str, str, ColumnType]],
    ) -> tuple[str, list[FinalColumn], list[str]]:
        """Create or extend the final table of a stream; return its name, the column of
        every property in table order, and the columns no property fills any more.

        `properties` holds (property, conformed column name, wanted type) in schema order.
        Columns keep the name recorded for their property in earlier runs; new properties get
        new nullable columns, each with its property recorded in the column comment.
        """
        self.prepare_schema(schema)
        with self._ddl(f"create table {schema}.{conformed}") as conn:
            table, holder = self._table_for_stream(conn, schema, conformed, stream)
            if table != conformed:
                logger.warning(
                    "%s would share table %s.%s: stream %s is stored in %s.%s instead",
                    f"Streams {holder} and {stream}"
                    if holder
                    else f"Stream {stream} and a table of the target",
                    schema,
                    conformed,
                    stream,
                    schema,
                    table,
                )
            existing = conn.execute(sql.TABLE_COLUMNS, (schema, table)).fetchall()
            owners = {name: _recorded(comment, "property") for name, _, comment in existing}
            types = {name: type_name for name, type_name, _ in existing}
            names = assign_names(
                [(prop, column) for prop, column, _ in properties], owners, RESERVED_COLUMNS
            )
            new = [
                (prop, names[prop], wanted)
                for prop, _, wanted in properties
                if names[prop] not in types
            ]
            widen = [
                (prop, names[prop], change)
                for prop, _, wanted in properties
                if names[prop] in types
                and (change := widening(types[names[prop]], wanted)) is not None
            ]
            if widen:
                self._widen(conn, schema, table, stream, widen)
                for _, column, (target, _) in widen:
                    types[column] = target.catalog
            if not existing:
                conn.execute(
                    sql.create_final_table(
                        schema, table, [(column, wanted.sql) for _, column, wanted in new]
                    )
                )
                conn.execute(sql.comment_on_table(schema, table, _comment("stream", stream)))
            else:
                for _, column, wanted in new:
                    conn.execute(sql.add_column(schema, table, column, wanted.sql))
            for prop, column, wanted in new:
                conn.execute(
                    sql.comment_on_column(schema, table, column, _comment("property", prop))
                )
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
        self,
        conn: PgConnection,
        schema: str,
        table: str,
        stream: str,
        changes: Sequence[tuple[str, str, tuple[ColumnType, str]]],
    ) -> None:
        """Change columns to wider types in place (SPEC §7), with the views that depend on
        them set aside and recreated in the same transaction (SPEC §8)."""
        columns = [column for _, column, _ in changes]
        described = ", ".join(f"{column} to {target.sql}" for _, column, (target, _) in changes)
        change = f"change the type of {schema}.{table} column {described}"
        with dependents_set_aside(
            conn, schema, table, columns, drop_cascade=self.settings.drop_cascade, change=change
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

    @property
    def nulls_not_distinct(self) -> bool:
        """Whether key indexes can say NULLS NOT DISTINCT (PostgreSQL 15+); older servers get
        expression indexes that make NULL key components equal (`sql.key_terms`)."""
        return self.server_version >= 150000

    def prepare_key_index(
        self,
        schema: str,
        table: str,
        keys: Sequence[str],
        cursor: str | None,
        key_types: Sequence[str] | None = None,
    ) -> None:
        """Give a table the unique key index of its dedup key, or none for `keys` empty.

        The index records its key in its comment. When the key or the load method changed
        since the index was made, the old index goes; before a new one is built, rows that now
        share a key are reduced to the winner of SPEC §6.3 (the only step here that reads the
        whole table, and only on such a change).
        """
        index = derived_name(table, "key")
        nulls_equal = self.nulls_not_distinct
        described: dict[str, Any] = {"key": list(keys), "nulls": "equal"}
        if key_types is not None:
            described["types"] = list(key_types)
        wanted = json.dumps(described) if keys else None
        with self._lock, self.raw_connection() as conn:
            found = conn.execute(sql.RELATION_COMMENT, (schema, index, sql.INDEX_KINDS)).fetchone()
            if found is not None and found[0] == wanted:
                return
            if found is not None:
                conn.execute(sql.drop_index(schema, index))
            if not keys:
                if found is not None:
                    logger.info(
                        "Dropped key index %s of %s.%s: no dedup key now", index, schema, table
                    )
                return
            deleted = conn.execute(sql.delete_key_losers(schema, table, keys, cursor)).rowcount
            if deleted:
                logger.warning(
                    "Key of %s.%s is now (%s): %d rows that shared a key with a better row were"
                    " removed",
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

    def prepare_companion(
        self,
        schema: str,
        name: str,
        like: tuple[str, str],
        comment: tuple[str, str],
        *,
        fresh: bool,
        since: str | None = None,
    ) -> None:
        """Create (or, with `fresh`, re-create) a helper table with the columns of a final
        table `like` (schema, table), or bring an existing one up to the final table's
        columns and types. `comment` is the (key, stream) recorded on it, with `since` (the
        first raw id of a full refresh's load) when given."""
        self.prepare_schema(schema)
        with self._ddl(f"create table {schema}.{name}") as conn:
            if fresh:
                conn.execute(sql.drop_table(schema, name))
            have = {
                column: type_name
                for column, type_name, _ in conn.execute(sql.TABLE_COLUMNS, (schema, name))
            }
            if not have:
                conn.execute(sql.create_table_like(schema, name, *like))
                recorded = {comment[0]: comment[1], **({"since": since} if since else {})}
                conn.execute(sql.comment_on_table(schema, name, _comment_text(recorded)))
                return
            for column, type_name, _ in conn.execute(sql.TABLE_COLUMNS, like).fetchall():
                if column not in have:
                    conn.execute(sql.add_column(schema, name, column, type_name))
                elif have[column] != type_name:
                    target = catalog_column_type(type_name)
                    change = widening(have[column], target) if target else None
                    using = change[1] if change else "{}::" + type_name
                    conn.execute(sql.alter_column_type(schema, name, column, type_name, using))

    def open_load(
        self,
        side: tuple[str, str],
        like: tuple[str, str],
        raw: tuple[str, str],
        stream: str,
        generation: int | None,
    ) -> str | None:
        """Find the load of the same Singer table version (`generation`; None when the stream's
        records carry no table version) that an earlier run began, so this run's records go on
        where that run's last STATE left it; return the raw id from which that load's raw rows
        start. None when there is none: the caller starts a new load.

        Only records of the same table version continue a load (SPEC §6.1): a tap that
        restarts its full-table sync without table versions sends every record again, so the
        unfinished load is discarded (and logged) rather than doubled. A load of this version
        may also have been completed already (swapped in before the run died, ahead of its
        next STATE): the records re-sent from that STATE then continue it from the live rows,
        which would otherwise be replaced by the re-sent records alone."""
        with self._lock, self.raw_connection() as conn:
            found = conn.execute(sql.RELATION_COMMENT, (*side, sql.TABLE_KINDS)).fetchone()
            if found is None:
                if generation is None:
                    return None
                return self._continue_completed_load(conn, side, like, raw, stream, generation)
            since = _recorded(found[0], "since")
            if generation is not None and since is not None:
                other = conn.execute(sql.other_generation(*side), (generation,)).fetchone()
                if other is None:
                    logger.info(
                        "Stream %s: continuing the full refresh of table version %s an earlier"
                        " run left unfinished in %s.%s",
                        stream,
                        generation,
                        *side,
                    )
                    return since
            counted = conn.execute(sql.count_rows(*side)).fetchone()
            conn.execute(sql.drop_table(*side))
        logger.warning(
            "Stream %s: discarded the unfinished full refresh an earlier run left in %s.%s"
            " (%s rows): %s, so this run's load starts afresh",
            stream,
            *side,
            counted[0] if counted else 0,
            "its records carry no table version"
            if generation is None
            else f"it is not of table version {generation}",
        )
        return None

    def _continue_completed_load(
        self,
        conn: PgConnection,
        side: tuple[str, str],
        like: tuple[str, str],
        raw: tuple[str, str],
        stream: str,
        generation: int,
    ) -> str | None:
        """Begin the side table from the live table when the live rows are a completed load
        of table version `generation`; return where its raw rows start, else None."""
        if conn.execute(sql.has_rows(*like)).fetchone() is None:
            return None
        if conn.execute(sql.other_generation(*like), (generation,)).fetchone() is not None:
            return None
        started = conn.execute(sql.first_raw_id_of_generation(*raw), (generation,)).fetchone()
        if started is None or started[0] is None:
            return None
        since = str(started[0])
        columns = [column for column, _, _ in conn.execute(sql.TABLE_COLUMNS, like).fetchall()]
        conn.execute(sql.create_table_like(*side, *like))
        conn.execute(sql.comment_on_table(*side, _comment_text({LOAD_OF: stream, "since": since})))
        copied = conn.execute(sql.insert_from(*side, *like, columns)).rowcount
        logger.info(
            "Stream %s: records of table version %s continue the load already in %s.%s"
            " (%s rows), which an earlier run completed before its last STATE",
            stream,
            generation,
            *like,
            copied,
        )
        return since

    def has_rows(self, schema: str, table: str) -> bool:
        """Whether a table holds any row."""
        with self.raw_connection() as conn:
            return conn.execute(sql.has_rows(schema, table)).fetchone() is not None

    def replace_contents(
        self,
        final: tuple[str, str] | None,
        side: tuple[str, str] | None,
        raw: tuple[str, str],
        since: str | None,
    ) -> int:
        """End a full refresh atomically (SPEC §6.1): the final table's rows become the side
        table's, inside the existing table so views on it stay; the side table goes; raw rows
        of earlier loads go. Returns the number of rows the load left (final, else raw)."""
        with self._lock, self.raw_connection() as conn:
            count = 0
            if final is not None and side is not None:
                columns = [
                    column for column, _, _ in conn.execute(sql.TABLE_COLUMNS, side).fetchall()
                ]
                try:
                    with conn.transaction():
                        conn.execute(sql.truncate(*final))
                except psycopg.errors.FeatureNotSupported:
                    # TRUNCATE is refused when a foreign key points at the table.
                    conn.execute(sql.delete_all(*final))
                count = conn.execute(sql.insert_from(*final, *side, columns)).rowcount
                conn.execute(sql.drop_table(*side))
            if since is not None:
                conn.execute(sql.delete_raw_before(*raw), (since,))
            else:
                conn.execute(sql.delete_all(*raw))
            if final is None:
                found = conn.execute(sql.count_rows(*raw)).fetchone()
                count = found[0] if found else 0
        return count

    def keep_generation(self, tables: Sequence[tuple[str, str]], version: int) -> list[int]:
        """Apply ACTIVATE_VERSION: remove every row of another Singer table version from the
        given tables, in one transaction; returns the rows removed from each."""
        with self._lock, self.raw_connection() as conn:
            return [
                conn.execute(sql.delete_other_generations(*table), (version,)).rowcount
                for table in tables
            ]

    def acquire_stream_connections(self) -> tuple[PgConnection, PgConnection] | None:
        """Two pooled connections for one sink's streaming batch (raw and final), or None when
        `MAX_STREAMING_BATCHES` batches already hold theirs."""
        with self._lock:
            if self._pairs_out >= self.MAX_STREAMING_BATCHES:
                return None
            self._pairs_out += 1
        handles: list[PoolProxiedConnection] = []
        try:
            for _ in range(2):
                handles.append(self._engine.raw_connection())
        except BaseException:
            for handle in handles:
                handle.close()
            with self._lock:
                self._pairs_out -= 1
            raise
        pair = tuple(_driver(handle) for handle in handles)
        with self._lock:
            for conn, handle in zip(pair, handles, strict=True):
                self._checked_out[id(conn)] = handle
        return pair[0], pair[1]

    def release_stream_connections(self, pair: tuple[PgConnection, PgConnection]) -> None:
        """Hand back a sink's connections once its batch is committed or rolled back; a
        connection lost or left inside a transaction is closed instead of kept."""
        with self._lock:
            self._pairs_out -= 1
            handles = [self._checked_out.pop(id(conn)) for conn in pair]
        for conn, handle in zip(pair, handles, strict=True):
            if conn.closed or conn.broken or conn.info.transaction_status:
                handle.invalidate()
            else:
                handle.close()

    @property
    def streaming_slots_left(self) -> int:
        """How many more sinks can start a streaming batch without waiting."""
        return self.MAX_STREAMING_BATCHES - self._pairs_out

    def lock_stream(self, stream: str, name: str) -> None:
        """Hold, until the run ends, the lock that keeps two runs from loading the same
        stream's tables at once (SPEC §9); wait up to `lock_wait_seconds` for another run
        holding it. `name` identifies the tables (the raw table's schema-qualified name).

        The lock is a session-level advisory lock on a connection of its own, so it is
        released when the run ends, however it ends.
        """
        session = self._lock_session
        if session is None or session.closed or session.broken:
            session = self._reopen_lock_session()
        if name in self._locked:
            return
        key = (sql.LOCK_CLASS, name)
        got = session.execute(sql.TRY_LOCK, key).fetchone()
        if not (got and got[0]):
            wait = self.settings.lock_wait_seconds
            refusal = (
                f"Another run is loading stream {stream} (tables {name}) into this database;"
                f" waited {wait} s for it to finish. Run the two one after the other, or raise"
                " lock_wait_seconds"
            )
            if wait <= 0:
                raise StreamLocked(refusal)
            logger.warning(
                "Another run is loading stream %s (tables %s); waiting up to %s s for it",
                stream,
                name,
                wait,
            )
            session.execute(sql.set_lock_timeout(wait * 1000))
            try:
                session.execute(sql.LOCK, key)
            except (psycopg.errors.LockNotAvailable, psycopg.errors.QueryCanceled):
                raise StreamLocked(refusal) from None
            finally:
                session.execute(sql.set_lock_timeout(0))
            logger.info("Stream %s: the other run has finished; loading", stream)
        self._locked.add(name)

    def _reopen_lock_session(self) -> PgConnection:
        """A new session for the stream locks. When the old one was lost, its locks went with
        it: they are taken again, unless another run took one meanwhile."""
        if self._lock_session is not None:
            self._lock_session.close()
        session = self._lock_session = self._open_connection()
        session.autocommit = True
        for name in sorted(self._locked):
            got = session.execute(sql.TRY_LOCK, (sql.LOCK_CLASS, name)).fetchone()
            if not (got and got[0]):
                msg = (
                    f"Lost the connection that held this run's lock on tables {name}, and"
                    " another run has taken them since: run again when it is done"
                )
                raise StreamLocked(msg)
        if self._locked:
            logger.warning(
                "Reconnected and took again this run's stream locks (%s)",
                ", ".join(sorted(self._locked)),
            )
        return session

    def preflight(self) -> None:
        """Connect once and check privileges, before any input is read."""
        with self.raw_connection() as conn:
            self._checked_schemas.update(self.database.check_privileges(conn))
            self.server_version = conn.info.server_version
        described = self.database.describe_embedded()
        if described:
            logger.info("%s", described)

    def dispose(self) -> None:
        """Close every pooled connection (releasing the stream locks), then the tunnel and
        the key files."""
        self.lock_watch.stop()
        if self._lock_session is not None:
            self._lock_session.close()
            self._lock_session = None
        with self._lock:
            held = list(self._checked_out.values())
            self._checked_out.clear()
        for handle in held:  # batches a failure left open: closed, never committed
            handle.invalidate()
        if self._cached_engine is not None:
            self._cached_engine.dispose()
            self._cached_engine = None
        self.database.close()
