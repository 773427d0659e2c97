"""SPEC §11: with no host, the target loads into an embedded PostgreSQL and says how to reach it."""

from __future__ import annotations

import os
import pwd
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from target_postgres_hp import embedded

from .targetrun import raw_data, run_target, users_stream

pytestmark = pytest.mark.integration


def stop_embedded(data_dir: Path, stderr: str) -> None:
    """Run the stop command the target printed, exactly as printed, in a shell; then the server
    must be gone: its postmaster.pid removed by a clean shutdown and its socket refusing."""
    match = re.search(r"It keeps running; stop it with: (.+)$", stderr, re.MULTILINE)
    assert match, stderr
    done = subprocess.run(
        ["sh", "-c", match.group(1)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "server stopped" in done.stdout, done.stdout
    assert not (data_dir / "postmaster.pid").exists()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(query_url(stderr), connect_timeout=5)


def pg_ctl_words(stderr: str) -> list[str]:
    """The pg_ctl command inside the printed stop command, as a shell would split it (as root,
    out of its `su -s /bin/sh <owner> -c '...'` wrapper)."""
    match = re.search(r"It keeps running; stop it with: (.+)$", stderr, re.MULTILINE)
    assert match, stderr
    words = shlex.split(match.group(1))
    if os.geteuid() != 0:
        return words
    assert words[:3] == ["su", "-s", "/bin/sh"], words
    assert words[4] == "-c", words
    return shlex.split(words[5])


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


@pytest.fixture
def runtime_dir() -> Iterator[Path]:
    """A short XDG_RUNTIME_DIR: the test's TMPDIR is too long a place for a Unix socket."""
    path = Path(tempfile.mkdtemp(prefix="xdg", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_a_data_directory_with_a_space_and_a_quote(tmp_path: Path, runtime_dir: Path) -> None:
    """A data directory whose path holds a space and a single quote: the server starts there
    (its socket in the runtime directory, as pg_ctl cannot pass such a socket path), and both
    printed commands work pasted into a shell as they are."""
    data_dir = tmp_path / "it's my data" / "pgdata"
    config = {"embedded_data_directory": str(data_dir), "database": "demo"}
    env = {"XDG_RUNTIME_DIR": str(runtime_dir)}
    run = run_target(config, users_stream(2), tmp_path / "run", env=env)
    assert run.returncode == 0, run.stderr
    try:
        assert pg_ctl_words(run.stderr)[1:] == ["-D", str(data_dir), "stop"]
        url = query_url(run.stderr)
        assert psycopg.conninfo.conninfo_to_dict(url)["host"].startswith(str(runtime_dir))
        with psycopg.connect(url) as conn:
            rows = raw_data(conn, "public_raw__stream_users")
            assert [row["id"] for row in rows] == [1, 2]
            directory = conn.execute("SHOW data_directory").fetchone()
            assert directory is not None
            assert directory[0] == str(data_dir)
        again = run_target(config, users_stream(1), tmp_path / "again", env=env)
        assert again.returncode == 0, again.stderr
        with psycopg.connect(url) as conn:
            assert len(raw_data(conn, "public_raw__stream_users")) == 3
    finally:
        stop_embedded(data_dir, run.stderr)


def test_a_quoted_data_directory_with_no_short_socket_place(tmp_path: Path) -> None:
    """With no XDG_RUNTIME_DIR and a TMPDIR too long for a socket, a data directory with a space
    has nowhere for its socket: one sentence, no server."""
    data_dir = tmp_path / "my data" / "pgdata"
    run = run_target(
        {"embedded_data_directory": str(data_dir)},
        users_stream(1),
        tmp_path / ("x" * 60),
        env={"XDG_RUNTIME_DIR": ""},
    )
    assert run.returncode == 1
    (line,) = run.error_lines()
    assert line.startswith("The embedded PostgreSQL in "), line
    assert "set XDG_RUNTIME_DIR to a short plain directory" in line, line
    assert "Traceback" not in run.stderr
    assert not (data_dir / "postmaster.pid").exists()


@pytest.mark.parametrize("name", ['say "hi"', "a$b", "back\\slash", "`x`", "tab\there"])
def test_a_data_directory_the_server_cannot_use_is_one_sentence(tmp_path: Path, name: str) -> None:
    """pg_ctl cannot start a server whose path holds a double quote, a backslash, a dollar sign,
    a backquote or whitespace other than a space: the target says so and how to fix it, before
    trying."""
    data_dir = tmp_path / name / "pgdata"
    run = run_target({"embedded_data_directory": str(data_dir)}, users_stream(1), tmp_path / "r")
    assert run.returncode == 1
    (line,) = run.error_lines()
    assert line.startswith("The embedded PostgreSQL cannot run in "), line
    assert line.endswith(
        "Set embedded_data_directory to an absolute path without double quotes, backslashes,"
        " $, backquotes or whitespace other than spaces."
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


def test_stop_command_for_an_owner_without_a_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As root, a data directory owned by a uid with no passwd entry still gets a command that
    runs: setpriv with the numeric ids."""
    server = embedded.EmbeddedServer(
        data_directory=tmp_path, socket_directory="/tmp/s", pg_ctl=Path("/opt/pg bin/pg_ctl")
    )
    monkeypatch.setattr(os, "geteuid", lambda: 0)

    def unknown(uid: int) -> pwd.struct_passwd:
        raise KeyError(uid)

    monkeypatch.setattr(pwd, "getpwuid", unknown)
    status = tmp_path.stat()
    assert shlex.split(embedded.stop_command(server)) == [
        "setpriv",
        f"--reuid={status.st_uid}",
        f"--regid={status.st_gid}",
        "--clear-groups",
        "--",
        "/opt/pg bin/pg_ctl",
        "-D",
        str(tmp_path),
        "stop",
    ]


@pytest.mark.parametrize("root", [True, False])
def test_describe_for_root_and_other_users(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, root: bool
) -> None:
    """The whole line: the psql argument is one shell word whose URL names the database and
    the socket directory (percent-encoded), and the line ends with the stop command."""
    data_dir = tmp_path / "a b'c"
    data_dir.mkdir()
    socket = "/run/x y'z&w"
    server = embedded.EmbeddedServer(
        data_directory=data_dir, socket_directory=socket, pg_ctl=Path("/opt/pg bin/pg_ctl")
    )
    monkeypatch.setattr(os, "geteuid", lambda: 0 if root else 1000)
    line = embedded.describe(server, "demo db")
    url = query_url(line)
    params = psycopg.conninfo.conninfo_to_dict(url)
    assert params == {"user": "postgres", "dbname": "demo db", "host": socket}
    match = re.search(r"It keeps running; stop it with: (.+)$", line)
    assert match
    assert match.group(1) == embedded.stop_command(server)
    words = shlex.split(match.group(1))
    inner = ["/opt/pg bin/pg_ctl", "-D", str(data_dir), "stop"]
    if root:
        owner = pwd.getpwuid(data_dir.stat().st_uid).pw_name
        assert words[:5] == ["su", "-s", "/bin/sh", owner, "-c"]
        assert shlex.split(words[5]) == inner
    else:
        assert words == inner
