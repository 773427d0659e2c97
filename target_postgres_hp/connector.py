"""The connector owns the database for the sinks: the run's one SQLAlchemy pool over psycopg 3,
whose connections come from `connection.Database` (tunnel, TLS, session settings), and the DDL
and catalog reads that make a stream's tables. Bulk work uses the psycopg connection under
SQLAlchemy's."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
import sqlalchemy as sa
from singer_sdk.sql import SQLConnector

from target_postgres_hp import sql
from target_postgres_hp.casting import ColumnType
from target_postgres_hp.config import Settings
from target_postgres_hp.connection import Database, check_schema, translate_privilege_error
from target_postgres_hp.finaltables import (
    FinalColumn,
    make_final_table,
    match_columns,
    match_key_index,
)
from target_postgres_hp.loading import PgConnection
from target_postgres_hp.lockwatch import LockWatch
from target_postgres_hp.naming import final_identifier
from target_postgres_hp.ownership import (
    comment_json,
    create_raw_table,
    raw_table_of,
    split_shared_raw,
)
from target_postgres_hp.streaming import (
    MAX_STREAMING_BATCHES,
    POOLED_STREAMING_BATCHES,
    StreamingPairs,
)
from target_postgres_hp.streaming import driver as streaming_driver
from target_postgres_hp.streamlocks import StreamLocks


@contextmanager
def _privileges_explained(action: str) -> Iterator[None]:
    """Turn a missing privilege into the one-sentence error that names the GRANT to run."""
    try:
        yield
    except psycopg.errors.InsufficientPrivilege as error:
        raise translate_privilege_error(error, action) from None


logger = logging.getLogger("target-postgres-hp.connector")


class PostgresConnector(SQLConnector):
    """Connections and DDL for one run of the target."""

    allow_column_add = True
    allow_column_alter = True
    allow_merge_upsert = True
    allow_overwrite = True
    allow_temp_tables = True

    def __init__(self, settings: Settings, database: Database | None = None) -> None:
        super().__init__(config={}, sqlalchemy_url="postgresql+psycopg://")
        self.settings = settings
        self.database = database or Database(settings)
        self._prepared_schemas: set[str] = set()
        self._checked_schemas: set[str] = set()
        self._lock = threading.Lock()
        #: The pairs of connections streaming batches hold, from the one pool.
        self.streaming = StreamingPairs(lambda: self._engine)
        self.server_version = 0
        #: Reports and bounds waits for other sessions' locks on every connection of the run.
        self.lock_watch = LockWatch(self.database.connect, settings.lock_wait_seconds)
        #: The stream locks of the run (SPEC §9).
        self.stream_locks = StreamLocks(
            self._open_connection, settings.lock_wait_seconds, self._pooled
        )

    def _pooled(self) -> bool:
        """Whether the run reaches the server through a connection pooler."""
        session = self.database.session
        return session is not None and session.pooled

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
            pool_size=2 * MAX_STREAMING_BATCHES + 2,
            max_overflow=2,
        )

    @contextmanager
    def raw_connection(self) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
        """A pooled psycopg connection; the transaction is committed when the block ends
        without error and rolled back otherwise."""
        with self._engine.connect() as conn:
            driver = streaming_driver(conn.connection)
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

    @contextmanager
    def serial_connection(self) -> Iterator[PgConnection]:
        """A pooled connection for statements on a stream's tables, one such block at a time
        across the run's threads."""
        with self._lock, self.raw_connection() as conn:
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
            table, shared = raw_table_of(conn, schema, conformed, stream, final_schema, final_name)
            create_raw_table(conn, schema, table, stream, final_schema, final_name)
            if shared:
                split_shared_raw(conn, schema, table, stream, final_schema, table_text)
        return table

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
        self.prepare_schema(schema)
        with self._ddl(f"create table {schema}.{conformed}") as conn:
            return make_final_table(
                conn,
                schema,
                conformed,
                stream,
                properties,
                drop_cascade=self.settings.drop_cascade,
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
        """Give a table the unique key index of its dedup key, or none for `keys` empty
        (`finaltables.match_key_index`)."""
        with self._lock, self.raw_connection() as conn:
            match_key_index(
                conn, schema, table, keys, cursor, key_types, nulls_equal=self.nulls_not_distinct
            )

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
            if not match_columns(conn, schema, name, like):
                conn.execute(sql.create_table_like(schema, name, *like))
                recorded = {comment[0]: comment[1], **({"since": since} if since else {})}
                conn.execute(sql.comment_on_table(schema, name, comment_json(recorded)))

    def helper_base(
        self, schema: str, conformed: str, stream: str, final_schema: str, table_text: str
    ) -> str:
        """The name in the raw schema that a direct-layout stream's helper tables (removed
        keys) derive from: its final table's raw table name, as `prepare_raw_table` would
        choose it, without making the raw table."""
        self.prepare_schema(schema)
        with self._ddl(f"create table {schema}.{conformed}") as conn:
            base, _ = raw_table_of(
                conn,
                schema,
                conformed,
                stream,
                final_schema,
                final_identifier(table_text),
                what="its removed-keys table named after",
            )
        return base

    def has_table(self, schema: str, table: str) -> bool:
        """Whether a table exists."""
        with self.raw_connection() as conn:
            found = conn.execute(sql.RELATION_COMMENT, (schema, table, sql.TABLE_KINDS))
            return found.fetchone() is not None

    def has_rows(self, schema: str, table: str) -> bool:
        """Whether a table holds any row."""
        with self.raw_connection() as conn:
            return conn.execute(sql.has_rows(schema, table)).fetchone() is not None

    def preflight(self) -> None:
        """Connect once and check privileges, before any input is read."""
        with self.raw_connection() as conn:
            if self._pooled():
                self.streaming.limit = POOLED_STREAMING_BATCHES
            self.database.check_writable()
            self._checked_schemas.update(self.database.check_privileges(conn))
            self.server_version = conn.info.server_version
        described = self.database.describe_embedded()
        if described:
            logger.info("%s", described)

    def dispose(self) -> None:
        """Close every pooled connection (releasing the stream locks), then the tunnel and
        the key files."""
        self.lock_watch.stop()
        self.stream_locks.close()
        self.streaming.close()
        if self._cached_engine is not None:
            self._cached_engine.dispose()
            self._cached_engine = None
        self.database.close()
