"""SPEC §3.2: SSH tunnels with key and password authentication, each failure explained."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from servers import SSHGateway, free_port, make_ssh_key

from .targetrun import raw_data, run_target, users_stream

pytestmark = pytest.mark.integration

RAW_TABLE = "tap_data_raw__stream_users"


def tunnel_config(pg_db: Any, ssh_server: SSHGateway, **tunnel: Any) -> dict[str, Any]:
    return pg_db.config(
        schema="tap_data",
        tunnel_method={
            "tunnel_host": ssh_server.host,
            "tunnel_port": ssh_server.port,
            "tunnel_user": ssh_server.username,
            **tunnel,
        },
    )


def assert_loaded_through(ssh_server: SSHGateway, pg_db: Any, forwards_before: int) -> None:
    assert ssh_server.server.forwarded_connections > forwards_before
    assert [row["id"] for row in raw_data(pg_db.admin(), RAW_TABLE)] == [1, 2]


@pytest.mark.parametrize("kind", ["rsa", "ed25519", "ecdsa"])
def test_key_tunnel_loads_data(
    pg_db: Any, ssh_server: SSHGateway, tmp_path: Path, kind: str
) -> None:
    before = ssh_server.server.forwarded_connections
    key = ssh_server.keys[kind]  # type: ignore[index]
    config = tunnel_config(pg_db, ssh_server, tunnel_method="SSH_KEY_AUTH", ssh_key=key.private_pem)
    run = run_target(config, users_stream(2), tmp_path)
    assert run.returncode == 0, run.stderr
    assert_loaded_through(ssh_server, pg_db, before)
    assert "SSH tunnel open: 127.0.0.1:" in run.stderr
    assert list(run.tmpdir.iterdir()) == []


def test_key_file_in_openssh_format(pg_db: Any, ssh_server: SSHGateway, tmp_path: Path) -> None:
    before = ssh_server.server.forwarded_connections
    key_path = ssh_server.keys["rsa"].write(tmp_path / "id_rsa", openssh=True)
    config = tunnel_config(pg_db, ssh_server, tunnel_method="SSH_KEY_AUTH", ssh_key=str(key_path))
    run = run_target(config, users_stream(2), tmp_path / "run")
    assert run.returncode == 0, run.stderr
    assert_loaded_through(ssh_server, pg_db, before)


def test_encrypted_key_with_passphrase(pg_db: Any, ssh_server: SSHGateway, tmp_path: Path) -> None:
    before = ssh_server.server.forwarded_connections
    key = ssh_server.encrypted_key
    config = tunnel_config(
        pg_db,
        ssh_server,
        tunnel_method="SSH_KEY_AUTH",
        ssh_key=key.private_pem,
        ssh_key_password=key.passphrase,
    )
    run = run_target(
        config, users_stream(2), tmp_path, env={"TARGET_POSTGRES_HP_LOGLEVEL": "DEBUG"}
    )
    assert run.returncode == 0, run.stderr
    assert_loaded_through(ssh_server, pg_db, before)
    assert key.passphrase is not None
    assert key.passphrase not in run.output
    assert pg_db.role.password not in run.output


def test_meltanolabs_ssh_tunnel_alias(pg_db: Any, ssh_server: SSHGateway, tmp_path: Path) -> None:
    before = ssh_server.server.forwarded_connections
    config = pg_db.config(
        schema="tap_data",
        ssh_tunnel={
            "enable": True,
            "host": ssh_server.host,
            "port": ssh_server.port,
            "username": ssh_server.username,
            "private_key": ssh_server.keys["ed25519"].private_pem,
        },
    )
    run = run_target(config, users_stream(2), tmp_path)
    assert run.returncode == 0, run.stderr
    assert_loaded_through(ssh_server, pg_db, before)


def test_password_tunnel_loads_data(pg_db: Any, ssh_server: SSHGateway, tmp_path: Path) -> None:
    before = ssh_server.server.forwarded_connections
    config = tunnel_config(
        pg_db,
        ssh_server,
        tunnel_method="SSH_PASSWORD_AUTH",
        tunnel_user_password=ssh_server.password,
        tunnel_host_key=ssh_server.server.known_hosts_line,
    )
    run = run_target(
        config, users_stream(2), tmp_path, env={"TARGET_POSTGRES_HP_LOGLEVEL": "DEBUG"}
    )
    assert run.returncode == 0, run.stderr
    assert_loaded_through(ssh_server, pg_db, before)
    assert ssh_server.password not in run.output


def test_wrong_password(pg_db: Any, ssh_server: SSHGateway, tmp_path: Path) -> None:
    config = tunnel_config(
        pg_db, ssh_server, tunnel_method="SSH_PASSWORD_AUTH", tunnel_user_password="wrong-pw-123"
    )
    run = run_target(config, users_stream(1), tmp_path)
    assert run.returncode == 1
    assert run.error_lines() == [
        f"The SSH bastion 127.0.0.1:{ssh_server.port} refused user 'tunnel' with the configured "
        "password: check tunnel_method.tunnel_user and the password."
    ]
    assert "wrong-pw-123" not in run.output


def test_key_not_authorized(pg_db: Any, ssh_server: SSHGateway, tmp_path: Path) -> None:
    stranger = make_ssh_key("ed25519")
    config = tunnel_config(
        pg_db, ssh_server, tunnel_method="SSH_KEY_AUTH", ssh_key=stranger.private_pem
    )
    run = run_target(config, users_stream(1), tmp_path)
    assert run.returncode == 1
    assert run.error_lines() == [
        f"The SSH bastion 127.0.0.1:{ssh_server.port} refused user 'tunnel' with the configured "
        "key: check tunnel_method.tunnel_user and the key."
    ]


def test_unreadable_key(pg_db: Any, ssh_server: SSHGateway, tmp_path: Path) -> None:
    config = tunnel_config(
        pg_db,
        ssh_server,
        tunnel_method="SSH_KEY_AUTH",
        ssh_key="-----BEGIN RSA PRIVATE KEY-----\nnot a key\n-----END RSA PRIVATE KEY-----\n",
    )
    run = run_target(config, users_stream(1), tmp_path)
    assert run.returncode == 1
    assert run.error_lines() == [
        "Setting `tunnel_method.ssh_key` cannot be read as an RSA, Ed25519 or ECDSA private key: "
        "give the private key in PEM or OpenSSH format (and its passphrase, if any)."
    ]


def test_encrypted_key_without_passphrase(
    pg_db: Any, ssh_server: SSHGateway, tmp_path: Path
) -> None:
    config = tunnel_config(
        pg_db,
        ssh_server,
        tunnel_method="SSH_KEY_AUTH",
        ssh_key=ssh_server.encrypted_key.private_pem,
    )
    run = run_target(config, users_stream(1), tmp_path)
    assert run.returncode == 1
    assert run.error_lines() == [
        "Setting `tunnel_method.ssh_key` is encrypted with a passphrase: set "
        "tunnel_method.ssh_key_password."
    ]


def test_unreachable_bastion(pg_db: Any, ssh_server: SSHGateway, tmp_path: Path) -> None:
    port = free_port()
    config = pg_db.config(
        schema="tap_data",
        tunnel_method={
            "tunnel_method": "SSH_PASSWORD_AUTH",
            "tunnel_host": "127.0.0.1",
            "tunnel_port": port,
            "tunnel_user": "tunnel",
            "tunnel_user_password": "x",
        },
    )
    run = run_target(config, users_stream(1), tmp_path)
    assert run.returncode == 1
    (line,) = run.error_lines()
    assert line.startswith(f"The SSH bastion 127.0.0.1:{port} cannot be reached (")
    assert line.endswith(
        "check tunnel_method.tunnel_host and tunnel_port, and that the bastion accepts "
        "connections from this machine."
    )


def test_host_key_mismatch(pg_db: Any, ssh_server: SSHGateway, tmp_path: Path) -> None:
    other = make_ssh_key("ed25519").public_openssh
    config = tunnel_config(
        pg_db,
        ssh_server,
        tunnel_method="SSH_PASSWORD_AUTH",
        tunnel_user_password=ssh_server.password,
        tunnel_host_key=other,
    )
    run = run_target(config, users_stream(1), tmp_path)
    assert run.returncode == 1
    assert run.error_lines() == [
        f"The SSH bastion 127.0.0.1:{ssh_server.port} presented a host key other than "
        "tunnel_method.tunnel_host_key: verify the bastion's identity before updating the setting."
    ]


def test_bastion_refusing_the_database_address(
    pg_db: Any, ssh_server: SSHGateway, tmp_path: Path
) -> None:
    config = tunnel_config(
        pg_db,
        ssh_server,
        tunnel_method="SSH_PASSWORD_AUTH",
        tunnel_user_password=ssh_server.password,
    )
    config["host"] = "10.255.255.1"  # refused by the gateway itself; never contacted
    run = run_target(config, users_stream(1), tmp_path)
    assert run.returncode == 1
    (line,) = run.error_lines()
    assert line.startswith(
        f"The SSH bastion 127.0.0.1:{ssh_server.port} could not open a connection to the "
        f"database at 10.255.255.1:{pg_db.server.port}"
    )


def test_pkcs8_key(pg_db: Any, ssh_server: SSHGateway, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    before = ssh_server.server.forwarded_connections
    key = serialization.load_ssh_private_key(
        ssh_server.keys["ecdsa"].private_openssh.encode(), None
    )
    pkcs8 = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pk8-phrase"),
    ).decode()
    config = tunnel_config(
        pg_db,
        ssh_server,
        tunnel_method="SSH_KEY_AUTH",
        ssh_key=pkcs8,
        ssh_key_password="pk8-phrase",
    )
    run = run_target(config, users_stream(2), tmp_path)
    assert run.returncode == 0, run.stderr
    assert_loaded_through(ssh_server, pg_db, before)


def test_sigterm_drains_and_closes_the_tunnel(
    pg_db: Any, ssh_server: SSHGateway, tmp_path: Path
) -> None:
    import json
    import os
    import signal
    import subprocess
    import time

    from .targetrun import EXECUTABLE

    config = tunnel_config(
        pg_db,
        ssh_server,
        tunnel_method="SSH_PASSWORD_AUTH",
        tunnel_user_password=ssh_server.password,
    )
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(config))
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    stderr_path = tmp_path / "stderr"
    with stderr_path.open("w") as stderr:
        process = subprocess.Popen(
            [str(EXECUTABLE), "--config", str(config_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env={**os.environ, "TMPDIR": str(tmpdir)},
        )
        assert process.stdin is not None
        process.stdin.write(users_stream(2))
        process.stdin.flush()  # input stays open: the run is mid-stream
        deadline = time.monotonic() + 60
        while "SSH tunnel open" not in stderr_path.read_text():
            assert time.monotonic() < deadline, stderr_path.read_text()
            time.sleep(0.1)
        time.sleep(1)
        process.send_signal(signal.SIGTERM)
        stdout, _ = process.communicate(timeout=60)
    log = stderr_path.read_text()
    assert process.returncode == 0, log
    assert "SSH tunnel closed" in log
    assert stdout.strip().splitlines()[-1] == '{"users": 2}'
    assert [row["id"] for row in raw_data(pg_db.admin(), RAW_TABLE)] == [1, 2]
    assert list(tmpdir.iterdir()) == []


def test_unencrypted_mode_is_allowed_only_through_the_tunnel(
    pg_db: Any, ssh_server: SSHGateway, tmp_path: Path
) -> None:
    # db.internal is what the bastion calls the database; from here it is not a loopback host.
    direct = pg_db.config(schema="tap_data", host="db.internal", ssl_mode={"mode": "disable"})
    refused = run_target(direct, users_stream(1), tmp_path / "direct")
    assert refused.returncode == 1
    assert refused.error_lines() == [
        "Setting `ssl_mode.mode` is disable, which may send data unencrypted to db.internal: "
        "use require, verify-ca or verify-full, or reach the server through tunnel_method (SSH)."
    ]
    before = ssh_server.server.forwarded_connections
    tunnelled = tunnel_config(
        pg_db,
        ssh_server,
        tunnel_method="SSH_PASSWORD_AUTH",
        tunnel_user_password=ssh_server.password,
    )
    tunnelled.update(host="db.internal", ssl_mode={"mode": "disable"})
    run = run_target(tunnelled, users_stream(2), tmp_path / "tunnel")
    assert run.returncode == 0, run.stderr
    assert_loaded_through(ssh_server, pg_db, before)
