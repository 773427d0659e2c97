"""libpq parameters built from settings (SPEC §3), checked without a server."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest

from target_postgres_hp.config import Settings
from target_postgres_hp.connection import libpq_params
from target_postgres_hp.errors import ConnectError
from target_postgres_hp.keyfiles import KeyFiles
from target_postgres_hp.tunnel import Endpoint

PEM_CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
PEM_KEY = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"


def params(keyfiles: KeyFiles, endpoint: Endpoint | None = None, **config: Any) -> dict[str, str]:
    base = {"host": "db.example.com", "username": "loader", "password": "pw", **config}
    return libpq_params(Settings.from_config(base), endpoint, keyfiles)


@pytest.fixture
def keyfiles() -> Any:
    files = KeyFiles()
    yield files
    files.close()


def test_basic_parameters(keyfiles: KeyFiles) -> None:
    p = params(keyfiles, port=6543, database="sales")
    assert p["host"] == "db.example.com"
    assert p["port"] == "6543"
    assert p["user"] == "loader"
    assert p["password"] == "pw"
    assert p["dbname"] == "sales"
    assert p["sslmode"] == "require"
    assert p["connect_timeout"] == "60"
    assert p["application_name"] == "target-postgres-hp"
    assert p["keepalives_idle"] == "60"
    assert "sslrootcert" not in p


def test_database_defaults_to_user_name(keyfiles: KeyFiles) -> None:
    assert params(keyfiles)["dbname"] == "loader"


def test_tunnel_endpoint_keeps_host_name_for_verification(keyfiles: KeyFiles) -> None:
    p = params(keyfiles, Endpoint(host="127.0.0.1", port=40001), port=5432)
    assert (p["host"], p["hostaddr"], p["port"]) == ("db.example.com", "127.0.0.1", "40001")


def test_pem_text_goes_to_private_files(keyfiles: KeyFiles) -> None:
    p = params(
        keyfiles,
        ssl_mode={
            "mode": "verify-full",
            "ca_certificate": PEM_CA,
            "client_certificate": PEM_CA,
            "client_key": PEM_KEY,
            "client_key_password": "phrase",
        },
    )
    directory = keyfiles.directory
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for key in ("sslrootcert", "sslcert", "sslkey"):
        path = Path(p[key])
        assert path.parent == directory
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Path(p["sslrootcert"]).read_text() == PEM_CA
    assert Path(p["sslkey"]).read_text() == PEM_KEY
    assert p["sslpassword"] == "phrase"
    keyfiles.close()
    assert not directory.exists()


def test_paths_are_expanded_and_keys_copied(
    keyfiles: KeyFiles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "ca.pem").write_text(PEM_CA)
    (tmp_path / "client.key").write_text(PEM_KEY)
    (tmp_path / "client.key").chmod(0o644)
    (tmp_path / "client.crt").write_text(PEM_CA)
    p = params(
        keyfiles,
        ssl_mode={
            "mode": "verify-ca",
            "ca_certificate": "~/ca.pem",
            "client_certificate": "~/client.crt",
            "client_key": "~/client.key",
        },
    )
    assert p["sslrootcert"] == str(tmp_path / "ca.pem")
    assert p["sslcert"] == str(tmp_path / "client.crt")
    key_copy = Path(p["sslkey"])
    assert key_copy.parent == keyfiles.directory
    assert stat.S_IMODE(key_copy.stat().st_mode) == 0o600


def test_missing_file_is_a_clear_error(keyfiles: KeyFiles) -> None:
    with pytest.raises(ConnectError) as caught:
        params(keyfiles, ssl_mode={"mode": "verify-ca", "ca_certificate": "/nowhere/ca.pem"})
    assert str(caught.value) == (
        "Setting `ssl_mode.ca_certificate` names the file '/nowhere/ca.pem', which does not "
        "exist: give PEM text or the path of a readable file."
    )


def test_url_params_reach_libpq(keyfiles: KeyFiles) -> None:
    p = params(keyfiles, jdbc_url_params="connectTimeout=0&tcpKeepAlive=false&ApplicationName=x")
    assert p["connect_timeout"] == "0"
    assert p["keepalives"] == "0"
    assert "keepalives_idle" not in p
    assert p["application_name"] == "x"


def test_settings_win_over_url_ssl_files(
    keyfiles: KeyFiles, caplog: pytest.LogCaptureFixture
) -> None:
    p = params(
        keyfiles,
        jdbc_url_params="sslrootcert=/from/url.pem",
        ssl_mode={"mode": "verify-ca", "ca_certificate": PEM_CA},
    )
    assert p["sslrootcert"] != "/from/url.pem"
    assert (
        "jdbc_url_params sets sslrootcert, which ssl_mode.ca_certificate overwrites" in caplog.text
    )
