"""The connector owns the database for the sinks: one SQLAlchemy engine over psycopg 3 whose
connections come from `connection.Database` (tunnel, TLS, session settings), plus the DDL and
COPY the sinks need. Bulk work uses the psycopg connection under SQLAlchemy's."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import sqlalchemy as sa
from singer_sdk.sql import SQLConnector

from target_postgres_hp import sql
from target_postgres_hp.config import Settings
from target_postgres_hp.connection import Database, translate_privilege_error
from target_postgres_hp.naming import fit

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
        try:
            with self.raw_connection() as conn:
                conn.execute(sql.create_schema(schema_name))
        except psycopg.errors.InsufficientPrivilege as error:
            raise translate_privilege_error(error, f"create schema {schema_name}") from None
        self._prepared_schemas.add(schema_name)

    def prepare_raw_table(self, schema: str, table: str) -> None:
        """Create the raw table of a stream (and its schema) unless they exist."""
        self.prepare_schema(schema)
        primary_key = fit(f"{table}_pkey", f"{schema}.{table}_pkey")
        index = fit(f"{table}_untyped", f"{schema}.{table}_untyped")
        try:
            with self.raw_connection() as conn:
                conn.execute(sql.create_raw_table(schema, table, primary_key, index))
        except psycopg.errors.InsufficientPrivilege as error:
            raise translate_privilege_error(error, f"create table {schema}.{table}") from None

    def copy_raw_rows(self, schema: str, table: str, rows: Iterable[tuple[Any, ...]]) -> int:
        """COPY rows into a raw table in one transaction; return how many were written."""
        count = 0
        with (
            self.raw_connection() as conn,
            conn.cursor() as cursor,
            cursor.copy(sql.copy_raw(schema, table)) as copy,
        ):
            for row in rows:
                copy.write_row(row)
                count += 1
        return count

    def preflight(self) -> None:
        """Connect once and check privileges, before any input is read."""
        with self.raw_connection() as conn:
            self.database.check_privileges(conn)
        described = self.database.describe_embedded()
        if described:
            logger.info("%s", described)

    def dispose(self) -> None:
        """Close every pooled connection, then the tunnel and the key files."""
        if self._cached_engine is not None:
            self._cached_engine.dispose()
            self._cached_engine = None
        self.database.close()
