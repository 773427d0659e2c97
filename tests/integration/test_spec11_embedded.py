"""SPEC §11: with no host, the target loads into an embedded PostgreSQL and says how to reach it."""

from __future__ import annotations

import os
import pwd
import re
import shlex
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from target_postgres_hp import embedded

from .targetrun import raw_data, run_target, users_stream

pytestmark = pytest.mark.integration


def stop_embedded(data_dir: Path, stderr: str) -> None:
    """Run the stop command the target printed, exactly as printed, in a shell; then the server
    must be gone (its postmaster.pid removed by a clean shutdown)."""
    match = re.search(r"It keeps running; stop it with: (.+)$", stderr, re.MULTILINE)
    assert match, stderr
    done = subprocess.run(
        ["sh", "-c", match.group(1)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert not (data_dir / "postmaster.pid").exists()


def query_url(stderr: str) -> str:
    """The psql argument the target printed, as a shell would pass it."""
    match = re.search(r"Query it with: psql (.+?)\. It keeps running", stderr)
    assert match, stderr
    (url,) = shlex.split(match.group(1))
    return url


def test_no_host_loads_into_the_embedded_server(tmp_path: Path) -> None:
    data_dir = tmp_path / "pgdata"
    config = {"embedded_data_directory": str(data_dir), "database": "demo"}
    run = run_target(config, users_stream(3), tmp_path / "run")
    assert run.returncode == 0, run.stderr
    try:
        url = query_url(run.stderr)
        assert f"loaded into the embedded PostgreSQL in {data_dir}" in run.stderr
        with psycopg.connect(url) as conn:
            rows = raw_data(conn, "public_raw__stream_users")
            assert [row["id"] for row in rows] == [1, 2, 3]
            assert conn.execute("SHOW server_version_num").fetchone()[0] >= "160000"
        again = run_target(config, users_stream(2), tmp_path / "again")
        assert again.returncode == 0, again.stderr
        with psycopg.connect(url) as conn:
            assert len(raw_data(conn, "public_raw__stream_users")) == 5
    finally:
        stop_embedded(data_dir, run.stderr)


def test_printed_commands_work_as_printed(tmp_path: Path) -> None:
    """The psql and stop commands the target prints work pasted into a shell as they are (as
    root too, where the server runs as another user and pg_ctl refuses root), with a database
    name that needs quoting."""
    data_dir = tmp_path / "pgdata"
    config = {"embedded_data_directory": str(data_dir), "database": "demo db"}
    run = run_target(config, users_stream(2), tmp_path / "run")
    assert run.returncode == 0, run.stderr
    try:
        url = query_url(run.stderr)
        script = "import sys, psycopg; print(psycopg.connect(sys.argv[1]).info.dbname)"
        done = subprocess.run(
            [
                "sh",
                "-c",
                f"{shlex.quote(sys.executable)} -c {shlex.quote(script)} {shlex.quote(url)}",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.stdout.strip() == "demo db", done.stderr
        if os.geteuid() == 0:
            assert "stop it with: su -s /bin/sh " in run.stderr
    finally:
        stop_embedded(data_dir, run.stderr)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=5)


@pytest.mark.parametrize("name", ["my data", "it's", 'say "hi"'])
def test_a_data_directory_the_server_cannot_use_is_one_sentence(tmp_path: Path, name: str) -> None:
    """pgserver cannot start a server whose path holds a space or a quote: the target says so
    and how to fix it, before trying."""
    data_dir = tmp_path / name / "pgdata"
    run = run_target({"embedded_data_directory": str(data_dir)}, users_stream(1), tmp_path / "r")
    assert run.returncode == 1
    (line,) = run.error_lines()
    assert line.startswith("The embedded PostgreSQL cannot run in "), line
    assert line.endswith(
        "Set embedded_data_directory to an absolute path without spaces or quotes."
    ), line
    assert "Traceback" not in run.stderr
    assert not data_dir.exists()


@pytest.mark.parametrize("root", [True, False])
def test_stop_command_for_root_and_other_users(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, root: bool
) -> None:
    """As root the command runs pg_ctl as the data directory's owner; otherwise it is pg_ctl
    itself. Paths are quoted for the shell."""
    data_dir = tmp_path / "a b'c"
    data_dir.mkdir()
    server = embedded.EmbeddedServer(
        data_directory=data_dir, socket_directory="/tmp/s", pg_ctl=Path("/opt/pg bin/pg_ctl")
    )
    monkeypatch.setattr(os, "geteuid", lambda: 0 if root else 1000)
    command = embedded.stop_command(server)
    inner = shlex.join(["/opt/pg bin/pg_ctl", "-D", str(data_dir), "stop"])
    if root:
        owner = pwd.getpwuid(data_dir.stat().st_uid).pw_name
        assert shlex.split(command) == ["su", "-s", "/bin/sh", owner, "-c", inner]
    else:
        assert command == inner
        assert shlex.split(command) == ["/opt/pg bin/pg_ctl", "-D", str(data_dir), "stop"]
