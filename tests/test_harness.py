"""Tests of the harness itself: servers, roles, TLS modes and the SSH gateway behave as promised."""

from __future__ import annotations

import logging
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import paramiko
import psycopg
import pytest
import sshtunnel
from servers import (
    SSH_KEY_KINDS,
    Connection,
    PgDatabase,
    PostgresServer,
    SSHGateway,
    SSHKeyKind,
    TLSMaterial,
    server_os_user,
)

pytestmark = pytest.mark.integration

TUNNEL_LOGGER = logging.getLogger("tests.sshtunnel")  # keeps sshtunnel from adding a stderr handler


def _one(conn: Connection, query: str) -> Any:
    """First column of the first row of `query`."""
    row = conn.execute(query).fetchone()
    assert row is not None
    return row[0]


# --------------------------------------------------------------------------- PostgreSQL


def test_pg16_answers_with_its_version(pg16: PostgresServer) -> None:
    with pg16.admin_connect() as conn:
        version = int(_one(conn, "SHOW server_version_num"))
    assert version == pg16.version_num
    assert version >= 160000


def test_pg_db_config_describes_the_loader_role(pg_db: PgDatabase) -> None:
    config = pg_db.config(batch_size_rows=10)
    assert config["username"] == pg_db.role.name
    assert config["database"] == pg_db.dbname
    assert config["ssl_mode"] == {"mode": "disable"}
    assert config["batch_size_rows"] == 10
    conn = psycopg.connect(
        host=config["host"],
        port=config["port"],
        user=config["username"],
        password=config["password"],
        dbname=config["database"],
        sslmode="disable",
    )
    with conn:
        assert _one(conn, "SELECT current_user") == pg_db.role.name


def test_loader_role_has_no_extra_privileges(pg_db: PgDatabase) -> None:
    with pg_db.admin() as conn:
        row = conn.execute(
            "SELECT rolsuper, rolcreatedb, rolcreaterole, rolcanlogin"
            " FROM pg_roles WHERE rolname = %s",
            [pg_db.role.name],
        ).fetchone()
    assert row == (False, False, False, True)


def test_loader_role_cannot_create_in_public_but_in_own_schema(pg_db: PgDatabase) -> None:
    assert pg_db.server.version_num >= 150000, "PG15+ revokes CREATE on public from PUBLIC"
    conn = pg_db.loader_connect()
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("CREATE TABLE public.x (id int)")
    conn.execute("CREATE SCHEMA s")
    conn.execute("CREATE TABLE s.x (id int)")
    conn.execute("INSERT INTO s.x VALUES (1)")
    assert _one(conn, "SELECT count(*) FROM s.x") == 1


# --------------------------------------------------------------------------- TLS


def _connect_admin(server: PostgresServer, **params: Any) -> Connection:
    """Admin connection to `server` with explicit libpq TLS parameters."""
    params.setdefault("host", server.host)
    return psycopg.connect(
        port=server.port,
        user=server.admin_user,
        password=server.admin_password,
        dbname="postgres",
        connect_timeout=10,
        **params,
    )


def _connect_cert_user(server: PostgresServer, tls: TLSMaterial, **params: Any) -> Connection:
    """cert_user connection with verify-full to "localhost" and no password."""
    return psycopg.connect(
        host=tls.server_identity,
        port=server.port,
        user=tls.client_role,
        dbname="postgres",
        sslmode="verify-full",
        sslrootcert=str(tls.ca_path),
        connect_timeout=10,
        **params,
    )


def test_tls_require_uses_ssl(pg15_tls: PostgresServer) -> None:
    assert pg15_tls.version_num // 10000 == 15
    with _connect_admin(pg15_tls, sslmode="require") as conn:
        assert _one(conn, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()") is True


def test_tls_verify_ca(pg15_tls: PostgresServer, tls_material: TLSMaterial) -> None:
    with _connect_admin(pg15_tls, sslmode="verify-ca", sslrootcert=str(tls_material.ca_path)):
        pass
    with pytest.raises(psycopg.OperationalError, match="certificate verify failed"):
        _connect_admin(pg15_tls, sslmode="verify-ca", sslrootcert=str(tls_material.wrong_ca_path))


def test_tls_verify_full_checks_the_host_name(
    pg15_tls: PostgresServer, tls_material: TLSMaterial
) -> None:
    ca = str(tls_material.ca_path)
    with pytest.raises(psycopg.OperationalError, match="does not match host name"):
        _connect_admin(pg15_tls, host="127.0.0.1", sslmode="verify-full", sslrootcert=ca)
    with _connect_admin(pg15_tls, host="localhost", sslmode="verify-full", sslrootcert=ca) as conn:
        assert _one(conn, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()") is True


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain-key", "encrypted-key"])
def test_cert_user_logs_in_with_client_certificate(
    pg15_tls: PostgresServer, tls_material: TLSMaterial, encrypted: bool
) -> None:
    key: dict[str, str] = (
        {
            "sslkey": str(tls_material.client_key_encrypted_path),
            "sslpassword": tls_material.client_key_passphrase,
        }
        if encrypted
        else {"sslkey": str(tls_material.client_key_path)}
    )
    with _connect_cert_user(
        pg15_tls, tls_material, sslcert=str(tls_material.client_cert_path), **key
    ) as conn:
        assert _one(conn, "SELECT current_user") == "cert_user"


def test_cert_user_needs_its_certificate(
    pg15_tls: PostgresServer, tls_material: TLSMaterial
) -> None:
    with pytest.raises(psycopg.OperationalError):
        _connect_cert_user(pg15_tls, tls_material, sslcert="", sslkey="")


def test_encrypted_key_needs_the_right_passphrase(
    pg15_tls: PostgresServer, tls_material: TLSMaterial
) -> None:
    assert "ENCRYPTED" in tls_material.client_key_encrypted_pem.splitlines()[0]
    with pytest.raises(psycopg.OperationalError, match="private key"):
        _connect_cert_user(
            pg15_tls,
            tls_material,
            sslcert=str(tls_material.client_cert_path),
            sslkey=str(tls_material.client_key_encrypted_path),
            sslpassword="not-the-passphrase",
        )


def test_server_key_is_private_to_the_server_user(tls_material: TLSMaterial) -> None:
    st = tls_material.server_key_path.stat()
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_uid == server_os_user().uid


def test_require_fails_on_a_server_without_ssl(pg15_plain: PostgresServer) -> None:
    with pytest.raises(psycopg.OperationalError, match="does not support SSL"):
        _connect_admin(pg15_plain, sslmode="require")
    with _connect_admin(pg15_plain, sslmode="disable") as conn:
        assert _one(conn, "SELECT 1") == 1


# --------------------------------------------------------------------------- SSH


def _discard_failed_forwarder(forwarder: Any) -> None:
    """Clean up after a failed `SSHTunnelForwarder.start()`.

    sshtunnel 0.5.1 binds the local port even when gateway auth fails, and `stop()` then hangs in
    `socketserver.shutdown()` (serve_forever never ran), so close those listeners directly.
    """
    if forwarder.is_active:
        forwarder.stop(force=True)
        return
    for server in forwarder._server_list:
        server.server_close()
    forwarder._server_list = []


@contextmanager
def _tunnel(gateway: SSHGateway, remote: tuple[str, int], **auth: Any) -> Iterator[int]:
    """Open an sshtunnel forwarder through the gateway and yield its local port."""
    forwarder = sshtunnel.SSHTunnelForwarder(
        (gateway.host, gateway.port),
        ssh_username=gateway.username,
        remote_bind_address=remote,
        local_bind_address=("127.0.0.1", 0),
        allow_agent=False,
        host_pkey_directories=[],
        logger=TUNNEL_LOGGER,
        **auth,
    )
    try:
        forwarder.start()
    except BaseException:
        _discard_failed_forwarder(forwarder)
        raise
    try:
        yield int(forwarder.local_bind_port)
    finally:
        forwarder.stop(force=True)


def _assert_pg_reachable_through_tunnel(
    gateway: SSHGateway, server: PostgresServer, **auth: Any
) -> None:
    """Run a query over the tunnel and check the gateway really forwarded it."""
    before = gateway.server.stats()
    with _tunnel(gateway, ("127.0.0.1", server.port), **auth) as local_port:
        assert local_port != server.port
        with _connect_admin(server, host="127.0.0.1", sslmode="prefer") as direct:
            expected = _one(direct, "SELECT current_setting('port')")
        tunnelled = psycopg.connect(
            host="127.0.0.1",
            port=local_port,
            user=server.admin_user,
            password=server.admin_password,
            dbname="postgres",
            connect_timeout=10,
        )
        with tunnelled:
            assert _one(tunnelled, "SELECT current_setting('port')") == expected
    after = gateway.server.stats()
    assert after.auth_successes == before.auth_successes + 1
    assert after.forwarded_connections == before.forwarded_connections + 1
    assert after.forward_destinations[-1] == ("127.0.0.1", server.port)


def test_ssh_tunnel_with_password(ssh_server: SSHGateway, pg16: PostgresServer) -> None:
    _assert_pg_reachable_through_tunnel(ssh_server, pg16, ssh_password=ssh_server.password)


@pytest.mark.parametrize("kind", SSH_KEY_KINDS)
def test_ssh_tunnel_with_key(
    ssh_server: SSHGateway, pg16: PostgresServer, kind: SSHKeyKind
) -> None:
    key = ssh_server.keys[kind].to_paramiko()
    _assert_pg_reachable_through_tunnel(ssh_server, pg16, ssh_pkey=key)


def test_ssh_tunnel_with_encrypted_key_file(
    ssh_server: SSHGateway, pg16: PostgresServer, tmp_path: Path
) -> None:
    key = ssh_server.encrypted_key
    path = key.write(tmp_path / "id_rsa")
    _assert_pg_reachable_through_tunnel(
        ssh_server, pg16, ssh_pkey=str(path), ssh_private_key_password=key.passphrase
    )


def test_ssh_keys_load_in_both_formats(ssh_server: SSHGateway) -> None:
    for key in (*ssh_server.keys.values(), ssh_server.encrypted_key):
        for openssh in (False, True):
            loaded = key.to_paramiko(openssh=openssh)
            assert f"{loaded.get_name()} {loaded.get_base64()}" == key.public_openssh


def test_ssh_wrong_password_is_refused(ssh_server: SSHGateway, pg16: PostgresServer) -> None:
    before = ssh_server.server.stats()
    with (
        pytest.raises(sshtunnel.BaseSSHTunnelForwarderError),
        _tunnel(ssh_server, ("127.0.0.1", pg16.port), ssh_password="wrong-password"),
    ):
        pass
    after = ssh_server.server.stats()
    assert after.auth_successes == before.auth_successes
    assert after.auth_failures > before.auth_failures


@contextmanager
def _transport(gateway: SSHGateway) -> Iterator[paramiko.Transport]:
    """An authenticated raw paramiko transport to the gateway."""
    transport = paramiko.Transport((gateway.host, gateway.port))
    try:
        transport.connect(username=gateway.username, password=gateway.password)
        yield transport
    finally:
        transport.close()


def test_ssh_refuses_forwarding_beyond_loopback(ssh_server: SSHGateway) -> None:
    before = ssh_server.server.stats()
    with _transport(ssh_server) as transport, pytest.raises(paramiko.ChannelException) as info:
        transport.open_channel("direct-tcpip", ("10.255.255.1", 5432), ("127.0.0.1", 40000))
    assert info.value.code == paramiko.common.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED
    after = ssh_server.server.stats()
    assert after.refused_forwards == before.refused_forwards + 1
    assert after.forwarded_connections == before.forwarded_connections


@pytest.mark.parametrize("destination", ["localhost", "127.0.0.1"])
def test_ssh_forwards_to_loopback_names(
    ssh_server: SSHGateway, pg16: PostgresServer, destination: str
) -> None:
    before = ssh_server.server.forwarded_connections
    with _transport(ssh_server) as transport:
        channel = transport.open_channel(
            "direct-tcpip", (destination, pg16.port), ("127.0.0.1", 40000)
        )
        channel.close()
    assert ssh_server.server.forwarded_connections == before + 1


def test_ssh_refuses_sessions(ssh_server: SSHGateway) -> None:
    with _transport(ssh_server) as transport, pytest.raises(paramiko.ChannelException):
        transport.open_session()


def test_ssh_known_hosts_line(ssh_server: SSHGateway) -> None:
    line = ssh_server.server.known_hosts_line
    assert line.startswith(f"[127.0.0.1]:{ssh_server.port} ssh-ed25519 AAAA")
    assert line.endswith(ssh_server.server.host_key_public)
