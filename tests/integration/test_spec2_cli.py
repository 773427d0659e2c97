"""SPEC §1 and §2 through the real command: --about, refusals as one sentence, and secrets
that never reach output or disk."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from servers import PgDatabase
from spec_settings import SPEC_SETTINGS

from .targetrun import EXECUTABLE, raw_data, run_target, users_stream

pytestmark = pytest.mark.integration


def about(fmt: str) -> str:
    done = subprocess.run(
        [str(EXECUTABLE), "--about", "--format", fmt], capture_output=True, text=True, check=True
    )
    return done.stdout


def test_about_json_lists_every_setting() -> None:
    info = json.loads(about("json"))
    assert info["name"] == "target-postgres-hp"
    properties = info["settings"]["properties"]
    for name in SPEC_SETTINGS:
        assert name in properties, name
        assert properties[name].get("description"), name
    assert properties["password"]["writeOnly"] is True
    assert {"about", "stream-maps", "activate-version", "target-schema"} <= set(
        info["capabilities"]
    )
    assert "validate_records" not in properties
    assert "add_record_metadata" not in properties


def test_about_markdown_has_a_settings_table() -> None:
    text = about("markdown")
    assert "| Setting | Required | Default | Description |" in text
    assert "| ssl_mode.mode |" in text
    assert "| tunnel_method.ssh_key |" in text


def test_version() -> None:
    done = subprocess.run(
        [str(EXECUTABLE), "--version"], capture_output=True, text=True, check=True
    )
    assert done.stdout.startswith("target-postgres-hp v0.1.0")


def test_config_mistakes_are_one_line_each_without_traceback(tmp_path: Path) -> None:
    config = {
        "host": "db.example.com",
        "username": "loader",
        "password": "hunter2-secret",
        "port": "5432x",
        "ssl_mode": {"mode": "verify-full"},
    }
    run = run_target(config, users_stream(1), tmp_path)
    assert run.returncode == 1
    assert run.error_lines() == [
        "Setting `port` is not a port number or a list of them (got '5432x'): give a number"
        " from 1 to 65535, or one per host separated by commas.",
        "Setting `ssl_mode.ca_certificate` is missing but ssl_mode.mode is verify-full: give "
        "the CA certificate as PEM text or a file path.",
    ]
    assert "Traceback" not in run.stderr
    assert "hunter2-secret" not in run.output
    config["port"] = 5432
    run = run_target(config, users_stream(1), tmp_path)
    assert run.error_lines() == [
        "Setting `ssl_mode.ca_certificate` is missing but ssl_mode.mode is verify-full: give "
        "the CA certificate as PEM text or a file path."
    ]


def test_misspelled_host_never_falls_back_to_the_embedded_server(tmp_path: Path) -> None:
    """`hostname` instead of `host`: refused before any input is read (the input here is not
    even Singer), naming the closest setting, and no embedded server is started."""
    data_dir = tmp_path / "pgdata"
    config = {
        "hostname": "db.example.com",
        "username": "loader",
        "passwrod": "hunter2-secret",
        "embedded_data_directory": str(data_dir),
        "use_copy": True,
    }
    run = run_target(config, "this is not a Singer line\n", tmp_path)
    assert run.returncode == 1
    assert run.error_lines() == [
        "Setting `hostname` is not a setting of this target: rename it to host (the closest"
        " setting) or remove it.",
        "Setting `passwrod` is not a setting of this target: rename it to password (the closest"
        " setting) or remove it.",
    ]
    assert "Traceback" not in run.stderr
    assert "hunter2-secret" not in run.output
    assert "embedded" not in run.stderr
    assert not data_dir.exists()


def test_unencrypted_remote_connection_is_refused(tmp_path: Path) -> None:
    config = {"host": "db.example.com", "username": "u", "ssl": False}
    run = run_target(config, users_stream(1), tmp_path)
    assert run.returncode == 1
    assert run.error_lines() == [
        "Setting `ssl_mode.mode` is disable, which may send data unencrypted to db.example.com: "
        "use require, verify-ca or verify-full, or reach the server through tunnel_method (SSH)."
    ]


def test_config_from_environment(pg_db: PgDatabase, tmp_path: Path) -> None:
    env = {
        "TARGET_POSTGRES_HP_HOST": pg_db.server.host,
        "TARGET_POSTGRES_HP_PORT": str(pg_db.server.port),
        "TARGET_POSTGRES_HP_USERNAME": pg_db.role.name,
        "TARGET_POSTGRES_HP_PASSWORD": pg_db.role.password,
        "TARGET_POSTGRES_HP_DATABASE": pg_db.dbname,
        "TARGET_POSTGRES_HP_SCHEMA": "env_data",
        "TARGET_POSTGRES_HP_SSL": "false",
    }
    done = subprocess.run(
        [str(EXECUTABLE), "--config", "ENV"],
        input=users_stream(2),
        capture_output=True,
        text=True,
        env={**env, "PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path)},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert [row["id"] for row in raw_data(pg_db.admin(), "env_data_raw__stream_users")] == [1, 2]


def test_misspelled_environment_setting_is_refused(tmp_path: Path) -> None:
    """With --config ENV, TARGET_POSTGRES_HP_HOSTNAME names no setting: refused before any
    input is read, naming the right variable, and no embedded server is started."""
    env = {
        "TARGET_POSTGRES_HP_HOSTNAME": "db.example.com",
        "TARGET_POSTGRES_HP_EMBEDDED_DATA_DIRECTORY": str(tmp_path / "pgdata"),
        "PATH": "/usr/bin:/bin",
        "TMPDIR": str(tmp_path),
    }
    done = subprocess.run(
        [str(EXECUTABLE), "--config", "ENV"],
        input="not Singer\n",
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 1
    errors = [line.split("| ")[-1] for line in done.stderr.splitlines() if "ERROR" in line]
    assert errors == [
        "Environment variable TARGET_POSTGRES_HP_HOSTNAME names no setting of this target:"
        " rename it to TARGET_POSTGRES_HP_HOST (setting host) or unset it."
    ]
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "pgdata").exists()


def test_secrets_never_reach_output_or_disk(pg_db: PgDatabase, tmp_path: Path) -> None:
    run = run_target(
        pg_db.config(
            schema="tap_data", ssl_mode={"mode": "prefer", "client_key_password": "kp-7731"}
        ),
        users_stream(2),
        tmp_path,
        env={"TARGET_POSTGRES_HP_LOGLEVEL": "DEBUG"},
    )
    assert run.returncode == 0, run.stderr
    assert pg_db.role.password not in run.output
    assert "kp-7731" not in run.output
    assert list(run.tmpdir.iterdir()) == []
    leftovers = [p for p in tmp_path.rglob("*") if p.is_file()]
    for path in leftovers:
        assert pg_db.role.password not in path.read_text(errors="ignore"), path
