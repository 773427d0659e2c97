"""SPEC §3.4: a least-privilege role works, and a missing privilege stops the run before any
input is read, naming the schema and the GRANT."""

from __future__ import annotations

from pathlib import Path

import pytest
from psycopg import sql
from servers import PgDatabase

from .targetrun import raw_data, run_target, users_stream

pytestmark = pytest.mark.integration


def relation_exists(pg_db: PgDatabase, name: str) -> bool:
    row = pg_db.admin().execute("SELECT to_regclass(%s)", (name,)).fetchone()
    return row is not None and row[0] is not None


def test_create_temporary_on_database_is_enough(pg_db: PgDatabase, tmp_path: Path) -> None:
    run = run_target(
        pg_db.config(schema="loader_data", raw_data_schema="Loader_Raw"), users_stream(2), tmp_path
    )
    assert run.returncode == 0, run.stderr
    assert [
        row["id"] for row in raw_data(pg_db.admin(), "loader_data_raw__stream_users", "loader_raw")
    ] == [1, 2]


def test_public_without_create_stops_before_reading(pg_db: PgDatabase, tmp_path: Path) -> None:
    if pg_db.server.version_num < 150000:
        pytest.skip("public is writable by every role before PostgreSQL 15")
    role = pg_db.role.name
    run = run_target(pg_db.config(), users_stream(2), tmp_path)
    assert run.returncode == 1
    assert run.error_lines() == [
        f"Role {role} may not create tables in schema public (on PostgreSQL 15 and later "
        f"ordinary roles may not create tables in public): run GRANT USAGE, CREATE ON SCHEMA "
        f'"public" TO "{role}"; or set the schema setting to a schema the target can create '
        "itself."
    ]
    assert "Reader 'target-postgres-hp' completed processing" not in run.stderr
    assert not relation_exists(pg_db, "airbyte_internal.public_raw__stream_users")


def test_the_grant_in_the_message_fixes_it(pg_db: PgDatabase, tmp_path: Path) -> None:
    admin = pg_db.admin()
    admin.execute(
        sql.SQL("GRANT USAGE, CREATE ON SCHEMA public TO {}").format(
            sql.Identifier(pg_db.role.name)
        )
    )
    run = run_target(pg_db.config(), users_stream(1), tmp_path)
    assert run.returncode == 0, run.stderr


def test_schema_owned_by_someone_else(pg_db: PgDatabase, tmp_path: Path) -> None:
    pg_db.admin().execute("CREATE SCHEMA finance")
    run = run_target(pg_db.config(schema="finance"), users_stream(1), tmp_path)
    assert run.returncode == 1
    (line,) = run.error_lines()
    assert line.startswith(f"Role {pg_db.role.name} may not create tables in schema finance")
    assert f'GRANT USAGE, CREATE ON SCHEMA "finance" TO "{pg_db.role.name}"' in line


def test_no_create_on_database(pg_db: PgDatabase, tmp_path: Path) -> None:
    admin = pg_db.admin()
    admin.execute(
        sql.SQL("REVOKE CREATE ON DATABASE {} FROM {}").format(
            sql.Identifier(pg_db.dbname), sql.Identifier(pg_db.role.name)
        )
    )
    run = run_target(pg_db.config(schema="loader_data"), users_stream(1), tmp_path)
    assert run.returncode == 1
    (line,) = run.error_lines()
    assert line == (
        f"Role {pg_db.role.name} may not create schema loader_data in database {pg_db.dbname}: "
        f'run GRANT CREATE, TEMPORARY ON DATABASE "{pg_db.dbname}" TO "{pg_db.role.name}"; or '
        "create the schema and GRANT USAGE, CREATE ON it."
    )


def test_namespace_schema_refused_mid_run_is_explained(pg_db: PgDatabase, tmp_path: Path) -> None:
    pg_db.admin().execute("CREATE SCHEMA hr")
    run = run_target(
        pg_db.config(schema="loader_data", raw_data_schema="hr"), users_stream(1), tmp_path
    )
    assert run.returncode == 1
    (line,) = run.error_lines()
    assert line == (
        f"Role {pg_db.role.name} may not create tables in schema hr: run GRANT USAGE, CREATE"
        f' ON SCHEMA "hr" TO "{pg_db.role.name}"; or set the raw_data_schema setting to a'
        " schema the target can create itself."
    )
