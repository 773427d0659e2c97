"""SPEC §3 and §4.1: connections, TLS modes, URL params, and data landing in raw tables."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from servers import PgDatabase, PostgresServer, TLSMaterial

from target_postgres_hp.config import Settings
from target_postgres_hp.connection import Database
from target_postgres_hp.errors import ConnectError

from .targetrun import RAW_LAYOUT, raw_data, raw_rows, run_target, users_stream

pytestmark = pytest.mark.integration

RAW_TABLE = "tap_data_raw__stream_users"


def connect(config: dict[str, Any]) -> tuple[Database, psycopg.Connection[Any]]:
    database = Database(Settings.from_config(config))
    try:
        return database, database.connect()
    except BaseException:
        database.close()
        raise


def session_value(config: dict[str, Any], query: str) -> Any:
    database, conn = connect(config)
    try:
        row = conn.execute(query).fetchone()
        assert row is not None
        return row[0] if len(row) == 1 else row
    finally:
        conn.close()
        database.close()


def test_records_land_in_the_raw_table(pg_db: PgDatabase, tmp_path: Path) -> None:
    run = run_target(pg_db.config(schema="tap_data"), users_stream(3), tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1] == '{"users": 3}'
    conn = pg_db.admin()
    columns = conn.execute(
        "SELECT column_name, data_type, is_nullable FROM information_schema.columns"
        " WHERE table_schema = 'airbyte_internal' AND table_name = %s ORDER BY ordinal_position",
        (RAW_TABLE,),
    ).fetchall()
    assert columns == RAW_LAYOUT
    rows = raw_rows(conn, RAW_TABLE)
    assert len(rows) == 3
    sync_ids = set()
    for i, (raw_id, extracted_at, loaded_at, data, meta, generation) in enumerate(rows, start=1):
        assert uuid.UUID(raw_id).version == 7
        assert extracted_at == datetime(2024, 5, 1 + i % 8, 10, tzinfo=timezone.utc)
        assert loaded_at is not None  # typed into the final table in the same batch
        assert data == {"id": i, "name": f"user {i}", "amount": Decimal(f"{i}.25")}
        assert meta["changes"] == []
        sync_ids.add(meta["sync_id"])
        assert generation == 0
    assert len(sync_ids) == 1
    indexes = conn.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'airbyte_internal'"
        " ORDER BY indexname"
    ).fetchall()
    assert [name for name, _ in indexes] == [f"{RAW_TABLE}_pkey", f"{RAW_TABLE}_untyped"]
    assert "WHERE (_airbyte_loaded_at IS NULL)" in indexes[1][1]


def test_a_second_run_appends(pg_db: PgDatabase, tmp_path: Path) -> None:
    for attempt in range(2):
        run = run_target(pg_db.config(schema="tap_data"), users_stream(2), tmp_path / str(attempt))
        assert run.returncode == 0, run.stderr
    assert len(raw_rows(pg_db.admin(), RAW_TABLE)) == 4


def test_session_settings(pg_db: PgDatabase) -> None:
    config = pg_db.config(schema="Tap Data, public")
    assert session_value(config, "SHOW TimeZone") == "UTC"
    assert session_value(config, "SHOW DateStyle") == "ISO, MDY"
    assert session_value(config, "SHOW search_path") == '"Tap Data", public'


def test_url_params_reach_the_session(pg_db: PgDatabase) -> None:
    config = pg_db.config(
        jdbc_url_params="ApplicationName=nightly%20load&options=-c%20statement_timeout%3D4321"
        "&connectTimeout=0&prepareThreshold=3"
    )
    assert session_value(config, "SHOW application_name") == "nightly load"
    assert session_value(config, "SHOW statement_timeout") == "4321ms"


def test_reserved_url_params_are_overwritten(pg_db: PgDatabase, tmp_path: Path) -> None:
    config = pg_db.config(
        schema="tap_data",
        jdbc_url_params="user=postgres&password=wrong&currentSchema=elsewhere&sslmode=require",
    )
    run = run_target(config, users_stream(1), tmp_path)
    assert run.returncode == 0, run.stderr
    assert "jdbc_url_params sets user, which the username setting overwrites" in run.stderr
    assert "jdbc_url_params sets sslmode, which the ssl_mode setting overwrites" in run.stderr
    owner = (
        pg_db.admin()
        .execute("SELECT tableowner FROM pg_tables WHERE tablename = %s", (RAW_TABLE,))
        .fetchone()
    )
    assert owner == (pg_db.role.name,)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ("fooBar=1", "Setting `jdbc_url_params` has the unknown key 'fooBar'"),
        ("connectTimeout", "Setting `jdbc_url_params` has the malformed pair 'connectTimeout'"),
    ],
)
def test_bad_url_params_stop_the_run(
    pg_db: PgDatabase, tmp_path: Path, params: str, expected: str
) -> None:
    run = run_target(
        pg_db.config(schema="tap_data", jdbc_url_params=params), users_stream(1), tmp_path
    )
    assert run.returncode == 1
    (line,) = run.error_lines()
    assert line.startswith(expected)
    assert "Traceback" not in run.stderr
    assert pg_db.admin().execute(
        "SELECT to_regclass(%s)", (f"airbyte_internal.{RAW_TABLE}",)
    ).fetchone() == (None,)


def test_wrong_password_is_explained(pg_db: PgDatabase, tmp_path: Path) -> None:
    run = run_target(
        pg_db.config(schema="tap_data", password="not-the-password"), users_stream(1), tmp_path
    )
    assert run.returncode == 1
    (line,) = run.error_lines()
    assert line == (
        f"Could not connect to {pg_db.role.name}@127.0.0.1:{pg_db.server.port}/{pg_db.dbname}: "
        f"the server refused the password of user {pg_db.role.name}: check username and password."
    )
    assert "not-the-password" not in run.output


def test_nothing_listening_is_explained(pg_db: PgDatabase, tmp_path: Path) -> None:
    from servers import free_port

    port = free_port()
    run = run_target(pg_db.config(port=port), users_stream(1), tmp_path)
    assert run.returncode == 1
    (line,) = run.error_lines()
    assert line.endswith(
        f"nothing listens at 127.0.0.1:{port}: check host and port, and that the server runs."
    )


# --------------------------------------------------------------------------- TLS (SPEC §3.1)


def tls_config(server: PostgresServer, mode: str, **overrides: Any) -> dict[str, Any]:
    """Config for the admin role of the TLS server (connect-level tests)."""
    return {
        "host": "127.0.0.1",
        "port": server.port,
        "username": server.admin_user,
        "password": server.admin_password,
        "database": "postgres",
        "ssl_mode": {"mode": mode},
        **overrides,
    }


SSL_IN_USE = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"


@pytest.mark.parametrize(
    ("mode", "encrypted"),
    [("disable", False), ("allow", False), ("prefer", True), ("require", True)],
)
def test_ssl_modes_on_a_tls_server(pg15_tls: PostgresServer, mode: str, encrypted: bool) -> None:
    assert session_value(tls_config(pg15_tls, mode), SSL_IN_USE) is encrypted


def test_verify_ca_with_the_right_ca(pg15_tls: PostgresServer, tls_material: TLSMaterial) -> None:
    for ca in (tls_material.ca_pem, str(tls_material.ca_path)):
        config = tls_config(pg15_tls, "verify-ca")
        config["ssl_mode"]["ca_certificate"] = ca
        assert session_value(config, SSL_IN_USE) is True


def test_verify_ca_with_a_wrong_ca(pg15_tls: PostgresServer, tls_material: TLSMaterial) -> None:
    config = tls_config(pg15_tls, "verify-ca")
    config["ssl_mode"]["ca_certificate"] = tls_material.wrong_ca_pem
    with pytest.raises(ConnectError) as caught:
        session_value(config, SSL_IN_USE)
    assert str(caught.value).endswith(
        "the server's certificate is not signed by ssl_mode.ca_certificate: give the CA "
        "certificate that issued the server's certificate."
    )


def test_verify_full_checks_the_host_name(
    pg15_tls: PostgresServer, tls_material: TLSMaterial
) -> None:
    config = tls_config(pg15_tls, "verify-full", host="localhost")
    config["ssl_mode"]["ca_certificate"] = tls_material.ca_pem
    assert session_value(config, SSL_IN_USE) is True
    config["host"] = "127.0.0.1"
    with pytest.raises(ConnectError) as caught:
        session_value(config, SSL_IN_USE)
    assert "the server's certificate does not name the host 127.0.0.1" in str(caught.value)


def test_require_fails_on_a_server_without_ssl(pg15_plain: PostgresServer) -> None:
    with pytest.raises(ConnectError) as caught:
        session_value(tls_config(pg15_plain, "require"), SSL_IN_USE)
    assert str(caught.value).endswith(
        "the server does not support SSL, but ssl_mode.mode is require: enable SSL on the "
        "server, or (only through tunnel_method or to a loopback host) use prefer or disable."
    )


def test_client_certificate_authentication(
    pg15_tls: PostgresServer, tls_material: TLSMaterial
) -> None:
    base = {
        "host": "localhost",
        "port": pg15_tls.port,
        "username": tls_material.client_role,
        "database": "postgres",
    }
    plain = {
        **base,
        "ssl_mode": {
            "mode": "verify-full",
            "ca_certificate": tls_material.ca_pem,
            "client_certificate": tls_material.client_cert_pem,
            "client_key": tls_material.client_key_pem,
        },
    }
    assert session_value(plain, "SELECT current_user") == tls_material.client_role
    encrypted = {
        **base,
        "ssl_mode": {
            "mode": "verify-full",
            "ca_certificate": str(tls_material.ca_path),
            "client_certificate": str(tls_material.client_cert_path),
            "client_key": str(tls_material.client_key_encrypted_path),
            "client_key_password": tls_material.client_key_passphrase,
        },
    }
    assert session_value(encrypted, "SELECT current_user") == tls_material.client_role
    encrypted["ssl_mode"]["client_key_password"] = "wrong passphrase"
    with pytest.raises(ConnectError) as caught:
        session_value(encrypted, "SELECT 1")
    assert "ssl_mode.client_key" in str(caught.value)
    assert "wrong passphrase" not in str(caught.value)


def test_load_over_verify_full(
    pg15_tls: PostgresServer, tls_material: TLSMaterial, tmp_path: Path
) -> None:
    database = PgDatabase.create(pg15_tls)
    try:
        config = database.config(
            host="localhost",
            schema="tap_data",
            ssl_mode={"mode": "verify-full", "ca_certificate": tls_material.ca_pem},
        )
        run = run_target(config, users_stream(2), tmp_path)
        assert run.returncode == 0, run.stderr
        assert [row["id"] for row in raw_data(database.admin(), RAW_TABLE)] == [1, 2]
        assert list(run.tmpdir.iterdir()) == []
        assert json.loads(run.stdout.splitlines()[-1]) == {"users": 2}
    finally:
        database.drop()


@pytest.mark.parametrize("mode", ["disable", "allow", "prefer"])
def test_unencrypted_modes_on_a_server_without_ssl(pg15_plain: PostgresServer, mode: str) -> None:
    assert session_value(tls_config(pg15_plain, mode), SSL_IN_USE) is False


def test_verify_ca_fails_on_a_server_without_ssl(
    pg15_plain: PostgresServer, tls_material: TLSMaterial
) -> None:
    config = tls_config(pg15_plain, "verify-ca")
    config["ssl_mode"]["ca_certificate"] = tls_material.ca_pem
    with pytest.raises(ConnectError) as caught:
        session_value(config, SSL_IN_USE)
    assert "the server does not support SSL, but ssl_mode.mode is verify-ca" in str(caught.value)


def test_generation_id_from_the_record_version(pg_db: PgDatabase, tmp_path: Path) -> None:
    lines = users_stream(1).splitlines(keepends=True)
    versioned = json.loads(lines[1])
    versioned["version"] = 1717000000000
    run = run_target(
        pg_db.config(schema="tap_data"), lines[0] + json.dumps(versioned) + "\n", tmp_path
    )
    assert run.returncode == 0, run.stderr
    rows = raw_rows(pg_db.admin(), RAW_TABLE)
    assert [(row[3]["id"], row[5]) for row in rows] == [(1, 1717000000000)]

    # Records without a version take the last ACTIVATE_VERSION's; at the end of input that
    # version is the only one left (SPEC §6.1).
    activate = {"type": "ACTIVATE_VERSION", "stream": "users", "version": 1717000000001}
    unversioned = {"type": "RECORD", "stream": "users", "record": {"id": 9}}
    stdin = lines[0] + json.dumps(activate) + "\n" + json.dumps(unversioned) + "\n"
    run = run_target(pg_db.config(schema="tap_data"), stdin, tmp_path)
    assert run.returncode == 0, run.stderr
    rows = raw_rows(pg_db.admin(), RAW_TABLE)
    assert [(row[3]["id"], row[5]) for row in rows] == [(9, 1717000000001)]
    final = pg_db.admin().execute(
        "SELECT id, _airbyte_generation_id FROM tap_data.users ORDER BY id"
    )
    assert final.fetchall() == [(9, 1717000000001)]
