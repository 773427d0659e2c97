"""PgBouncer in front of a test server, as managed providers put one in front of theirs
(SPEC §12): the Debian binary, run as the server's OS user on a loopback port, one instance per
test so its users and pool mode are the test's own. A plain library, like servers.py."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import psycopg
from servers import (
    LOCALHOST,
    HarnessError,
    LoaderRole,
    PgDatabase,
    PostgresServer,
    free_port,
    grant_traverse,
    server_os_user,
)

PoolMode = Literal["session", "transaction", "statement"]
PGBOUNCER = Path("/usr/sbin/pgbouncer")
START_TIMEOUT_S = 20


class PgBouncerNotFound(HarnessError):
    """PgBouncer is not installed (`apt-get install pgbouncer`)."""


def _quote(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


@dataclass(eq=False)
class PgBouncer:
    """A running PgBouncer: where it listens, in which pool mode, and its files."""

    mode: PoolMode
    port: int
    directory: Path
    process: subprocess.Popen[bytes] = field(repr=False)
    host: str = LOCALHOST

    @property
    def log(self) -> str:
        with contextlib.suppress(OSError):
            return (self.directory / "pgbouncer.log").read_text(errors="replace")
        return ""

    def stop(self) -> None:
        """End PgBouncer (its clients' connections with it); idempotent."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        shutil.rmtree(self.directory, ignore_errors=True)

    def restart(self) -> None:
        """Stop and start again on the same port, as a pooler restarted by its operator:
        every client connection is cut."""
        self.process.kill()
        self.process.wait(timeout=10)
        self.process = _spawn(self.directory)
        _wait_listening(self.host, self.port, self.process, self.directory)


def start_pgbouncer(
    server: PostgresServer,
    mode: PoolMode,
    users: dict[str, str],
    *,
    pool_size: int = 10,
) -> PgBouncer:
    """PgBouncer on a free loopback port in front of `server`, in `mode`, letting in `users`
    (name: password) with SCRAM, and logging in to the server as them."""
    if not PGBOUNCER.exists():
        raise PgBouncerNotFound(f"{PGBOUNCER} is missing: apt-get install pgbouncer")
    owner = server_os_user()
    directory = Path(tempfile.mkdtemp(prefix="pgbouncer-"))
    grant_traverse(directory, owner)
    shutil.chown(directory, owner.uid, owner.gid)
    auth = "".join(f"{_quote(name)} {_quote(password)}\n" for name, password in users.items())
    (directory / "userlist.txt").write_text(auth)
    port = free_port()
    (directory / "pgbouncer.ini").write_text(
        "\n".join(
            [
                "[databases]",
                f"* = host={server.host} port={server.port}",
                "[pgbouncer]",
                f"listen_addr = {LOCALHOST}",
                f"listen_port = {port}",
                "unix_socket_dir =",
                "auth_type = scram-sha-256",
                f"auth_file = {directory / 'userlist.txt'}",
                f"pool_mode = {mode}",
                f"default_pool_size = {pool_size}",
                "max_client_conn = 400",
                f"logfile = {directory / 'pgbouncer.log'}",
                f"pidfile = {directory / 'pgbouncer.pid'}",
                "server_tls_sslmode = disable",
                "",
            ]
        )
    )
    for path in directory.iterdir():
        shutil.chown(path, owner.uid, owner.gid)
        path.chmod(0o600)
    process = _spawn(directory)
    bouncer = PgBouncer(mode=mode, port=port, directory=directory, process=process)
    try:
        _wait_listening(LOCALHOST, port, process, directory)
    except BaseException:
        bouncer.stop()
        raise
    return bouncer


def _spawn(directory: Path) -> subprocess.Popen[bytes]:
    owner = server_os_user()
    switch = not owner.is_current
    return subprocess.Popen(
        [str(PGBOUNCER), str(directory / "pgbouncer.ini")],
        cwd=directory,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        user=owner.uid if switch else None,
        group=owner.gid if switch else None,
        extra_groups=[] if switch else None,
    )


def _wait_listening(
    host: str, port: int, process: subprocess.Popen[bytes], directory: Path
) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = (directory / "pgbouncer.log").read_text(errors="replace")
            raise HarnessError(f"pgbouncer exited ({process.returncode}):\n{log[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
            return
        time.sleep(0.05)
    raise HarnessError(f"pgbouncer did not listen on {host}:{port} in {START_TIMEOUT_S} s")


@dataclass
class PooledDatabase:
    """A test database reached through PgBouncer: the target's config points at the pooler,
    the test's own checks (`admin`) go straight to the server."""

    database: PgDatabase
    bouncer: PgBouncer

    @property
    def role(self) -> LoaderRole:
        return self.database.role

    @property
    def dbname(self) -> str:
        return self.database.dbname

    @property
    def server(self) -> PostgresServer:
        return self.database.server

    def config(self, **overrides: Any) -> dict[str, Any]:
        return {
            **self.database.config(),
            "host": self.bouncer.host,
            "port": self.bouncer.port,
            **overrides,
        }

    def admin(self) -> psycopg.Connection[Any]:
        return self.database.admin()

    def loader_connect(self, **kwargs: Any) -> psycopg.Connection[Any]:
        return self.database.loader_connect(**kwargs)

    def pooled_connect(self, **kwargs: Any) -> psycopg.Connection[Any]:
        """Connect as the loader role through the pooler (autocommit)."""
        return psycopg.connect(
            host=self.bouncer.host,
            port=self.bouncer.port,
            user=self.role.name,
            password=self.role.password,
            dbname=self.dbname,
            connect_timeout=10,
            autocommit=True,
            prepare_threshold=None,
            **kwargs,
        )


@contextlib.contextmanager
def pooled(database: PgDatabase, mode: PoolMode, **options: Any) -> Iterator[PooledDatabase]:
    """`database` behind a PgBouncer of its own in `mode`, stopped when the block ends; the
    test is skipped where PgBouncer is not installed (under CI a skip fails the run)."""
    try:
        bouncer = start_pgbouncer(
            database.server, mode, {database.role.name: database.role.password}, **options
        )
    except PgBouncerNotFound as missing:
        import pytest  # only here: the module is a plain library otherwise

        pytest.skip(str(missing))
    try:
        yield PooledDatabase(database, bouncer)
    finally:
        bouncer.stop()
