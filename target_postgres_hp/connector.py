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

from target_postgres_hp import sql
from target_postgres_hp.casting import ColumnType
from target_postgres_hp.config import Settings
from target_postgres_hp.connection import Database, translate_privilege_error
from target_postgres_hp.loading import PgConnection
from target_postgres_hp.naming import assign_names, derived_name

#: Final-table columns no property may take (SPEC §5).
RESERVED_COLUMNS = frozenset(sql.FINAL_META_COLUMNS)


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


@contextmanager
def _privileges_explained(action: str) -> Iterator[None]:
    """Turn a missing privilege into the one-sentence error that names the GRANT to run."""
    try:
        yield
    except psycopg.errors.InsufficientPrivilege as error:
        raise translate_privilege_error(error, action) from None


def _comment(key: str, value: str) -> str:
    return json.dumps({key: value}, ensure_ascii=False)


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
        self._lock = threading.Lock()
        self._idle_pairs: list[tuple[PgConnection, PgConnection]] = []
        self._pairs_out = 0
        self.server_version = 0

    def create_engine(self) -> sa.Engine:
        """An engine whose every connection is opened by `Database.connect`."""
        return sa.create_engine(
            "postgresql+psycopg://",
            creator=self.database.connect,
            pool_pre_ping=True,
            pool_size=2,
            max_overflow=2,
        )

    @contextmanager
    def raw_connection(self) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
        """A pooled psycopg connection; the transaction is committed when the block ends
        without error and rolled back otherwise."""
        with self._engine.connect() as conn:
            driver = conn.connection.driver_connection
            if not isinstance(driver, psycopg.Connection):
                msg = "the engine must use the psycopg driver"
                raise TypeError(msg)
            try:
                yield driver
            except BaseException:
                driver.rollback()
                raise
            driver.commit()

    def prepare_schema(self, schema_name: str) -> None:
        """Create a schema once per run, naming the missing privilege if it cannot."""
        if schema_name in self._prepared_schemas:
            return
        with _privileges_explained(f"create schema {schema_name}"), self.raw_connection() as conn:
            conn.execute(sql.create_schema(schema_name))
        self._prepared_schemas.add(schema_name)

    def _table_for_stream(
        self, conn: psycopg.Connection[tuple[Any, ...]], schema: str, conformed: str, stream: str
    ) -> str:
        """The table of `stream` in `schema`: the one recorded for it, else `conformed` unless
        another stream's table has that name, else `conformed` with a suffix (SPEC §5)."""
        owners = {
            name: _recorded(comment, "stream")
            for name, comment in conn.execute(sql.SCHEMA_TABLES, (schema,)).fetchall()
        }
        table = assign_names([(stream, conformed)], owners, frozenset())[stream]
        if table != conformed:
            logger.warning(
                "Stream %s is stored in table %s.%s because %s is taken by another stream",
                stream,
                schema,
                table,
                conformed,
            )
        return table

    def prepare_raw_table(self, schema: str, conformed: str, stream: str) -> str:
        """Create the raw table of a stream (and its schema) unless they exist; return its
        name."""
        self.prepare_schema(schema)
        with (
            _privileges_explained(f"create table {schema}.{conformed}"),
            self._lock,
            self.raw_connection() as conn,
        ):
            table = self._table_for_stream(conn, schema, conformed, stream)
            primary_key = derived_name(table, "pkey")
            index = derived_name(table, "untyped")
            conn.execute(sql.create_raw_table(schema, table, primary_key, index))
            conn.execute(sql.comment_on_table(schema, table, _comment("stream", stream)))
        return table

    def prepare_final_table(
        self,
        schema: str,
        conformed: str,
        stream: str,
        properties: Sequence[tuple[str, str, ColumnType]],
    ) -> tuple[str, list[FinalColumn]]:
        """Create or extend the final table of a stream; return its name and the column of
        every property, in table order.

        `properties` holds (property, conformed column name, wanted type) in schema order.
        Columns keep the name recorded for their property in earlier runs; new properties get
        new nullable columns, each with its property recorded in the column comment.
        """
        self.prepare_schema(schema)
        with (
            _privileges_explained(f"create table {schema}.{conformed}"),
            self._lock,
            self.raw_connection() as conn,
        ):
            table = self._table_for_stream(conn, schema, conformed, stream)
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
        return table, columns

    def prepare_unique_index(self, schema: str, table: str, keys: Sequence[str]) -> None:
        """The unique index a dedup stream's upsert goes through."""
        index = derived_name(table, "key")
        with self._lock, self.raw_connection() as conn:
            conn.execute(sql.create_unique_index(schema, table, index, keys))

    def acquire_stream_connections(self) -> tuple[PgConnection, PgConnection] | None:
        """Two connections for one sink's streaming batch (raw and final), or None when
        `MAX_STREAMING_BATCHES` batches already hold theirs."""
        with self._lock:
            if self._idle_pairs:
                return self._idle_pairs.pop()
            if self._pairs_out >= self.MAX_STREAMING_BATCHES:
                return None
            self._pairs_out += 1
        try:
            return self.database.connect(), self.database.connect()
        except BaseException:
            with self._lock:
                self._pairs_out -= 1
            raise

    def release_stream_connections(self, pair: tuple[PgConnection, PgConnection]) -> None:
        """Hand back a sink's connections once its batch is committed or rolled back."""
        with self._lock:
            if any(conn.closed or conn.info.transaction_status for conn in pair):
                self._pairs_out -= 1
                for conn in pair:
                    conn.close()
            else:
                self._idle_pairs.append(pair)

    @property
    def streaming_slots_left(self) -> int:
        """How many more sinks can start a streaming batch without waiting."""
        return len(self._idle_pairs) + self.MAX_STREAMING_BATCHES - self._pairs_out

    def preflight(self) -> None:
        """Connect once and check privileges, before any input is read."""
        with self.raw_connection() as conn:
            self.database.check_privileges(conn)
            self.server_version = conn.info.server_version
        described = self.database.describe_embedded()
        if described:
            logger.info("%s", described)

    def dispose(self) -> None:
        """Close every pooled connection, then the tunnel and the key files."""
        for pair in self._idle_pairs:
            for conn in pair:
                conn.close()
        self._idle_pairs.clear()
        if self._cached_engine is not None:
            self._cached_engine.dispose()
            self._cached_engine = None
        self.database.close()
