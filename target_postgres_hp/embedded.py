"""The embedded default: with no `host`, load into a local PostgreSQL from the `pgserver` wheel.

A newcomer can run a whole pipeline with nothing to set up. The server listens on a Unix
socket only (no network exposure), keeps running after the run so the tables can be queried,
and is found again by the next run that names the same data directory.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pwd
import shlex
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
from psycopg import sql

from target_postgres_hp.errors import EmbeddedServerError

logger = logging.getLogger("target-postgres-hp.embedded")

SUPERUSER = "postgres"

#: Characters pg_ctl cannot carry in the data directory: it starts the server through
#: `sh -c 'exec postgres -D "<dir>" ... -l "<dir>/log"'`, where these are special inside the
#: double quotes. A space or a single quote is fine there (see socket_outside_awkward_paths).
UNUSABLE = frozenset('"\\$`')


@contextmanager
def socket_outside_awkward_paths() -> Iterator[None]:
    """While pgserver starts a server, keep its Unix socket out of a data directory whose path
    a shell would split or misread (a space, a single quote).

    pgserver puts the socket in the data directory when the path is short enough, and hands
    it to pg_ctl as `-o "-k <dir>"`, which pg_ctl pastes unquoted into a shell command: a
    space splits it and a quote breaks the command. For such a path the socket goes where
    pgserver puts it when the data directory path is too long: its runtime directory, in a
    subdirectory named by the same hash pgserver uses.
    """
    from pgserver import postgres_server, utils

    module: Any = postgres_server
    helpers: Any = utils
    chosen: Callable[[Path, Path], Path] = module.find_suitable_socket_dir

    def choose(pgdata: Path, runtime_path: Path) -> Path:
        if shlex.quote(str(pgdata)) == str(pgdata):
            return chosen(pgdata, runtime_path)
        identifier = f"{pgdata}-{pgdata.stat().st_ino}"
        directory = runtime_path / hashlib.sha256(identifier.encode()).hexdigest()[:10]
        directory.mkdir(parents=True, exist_ok=True)
        if shlex.quote(str(directory)) != str(directory) or not helpers.socket_name_length_ok(
            directory / ".s.PGSQL.5432"
        ):
            raise RuntimeError(
                "its path holds a space or a quote, so the server's socket must go elsewhere, and"
                f" {str(directory)!r} is too long for a socket or holds one too; set"
                " XDG_RUNTIME_DIR to a short plain directory"
            )
        return directory

    module.find_suitable_socket_dir = choose
    try:
        yield
    finally:
        module.find_suitable_socket_dir = chosen


@dataclass(frozen=True)
class EmbeddedServer:
    """A running embedded server: where its socket is and how to stop it."""

    data_directory: Path
    socket_directory: str
    pg_ctl: Path


def start(data_directory: Path) -> EmbeddedServer:
    """Start (or find running) the embedded server whose data lives in `data_directory`."""
    # pgserver narrates initdb and pg_ctl at INFO; the target logs the one line that matters.
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    try:
        import pgserver  # optional extra, imported only when used
    except ImportError:
        raise EmbeddedServerError(
            "No host is configured and the embedded PostgreSQL is not installed: set host "
            "to load into your server, or install the extra with "
            "pip install 'target-postgres-hp[embedded]'."
        ) from None
    path = data_directory.resolve()
    awkward = sorted(
        {char for char in str(path) if char in UNUSABLE or (char.isspace() and char != " ")}
    )
    if awkward:
        shown = ", ".join(repr(char) for char in awkward)
        raise EmbeddedServerError(
            f"The embedded PostgreSQL cannot run in {str(path)!r}: its path holds {shown},"
            " which the pgserver wheel cannot pass to the server. Set embedded_data_directory to"
            " an absolute path without double quotes, backslashes, $, backquotes or whitespace"
            " other than spaces."
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # cleanup_mode=None keeps the server up after this run so its tables can be queried.
        with socket_outside_awkward_paths():
            server: Any = pgserver.get_server(path, cleanup_mode=None)  # type: ignore[attr-defined]
    except Exception as error:  # pgserver raises plain exceptions from initdb/pg_ctl
        raise EmbeddedServerError(
            f"The embedded PostgreSQL in {str(path)!r} could not be started ({error}): check "
            "that the directory is writable, or set embedded_data_directory to another path."
        ) from None
    params = psycopg.conninfo.conninfo_to_dict(server.get_uri())
    pg_ctl = Path(pgserver.__file__).parent / "pginstall" / "bin" / "pg_ctl"
    return EmbeddedServer(data_directory=path, socket_directory=str(params["host"]), pg_ctl=pg_ctl)


def ensure_database(server: EmbeddedServer, database: str) -> None:
    """Create `database` in the embedded server if it does not exist yet."""
    with psycopg.connect(
        host=server.socket_directory, user=SUPERUSER, dbname="postgres", autocommit=True
    ) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (database,)
        ).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))


def stop_command(server: EmbeddedServer) -> str:
    """A shell command that stops the server, to copy and paste as it is (every path quoted).

    pgserver started by root runs the server as a system user of its own and pg_ctl refuses to
    run as root, so for root the command runs pg_ctl as the owner of the data directory:
    `su -s /bin/sh <owner> -c '<pg_ctl> -D <dir> stop'` (su is in every Debian base image and
    in BusyBox, runuser is not; -s because the owner's login shell may be nologin).
    """
    command = shlex.join([str(server.pg_ctl), "-D", str(server.data_directory), "stop"])
    if os.geteuid() != 0:
        return command
    status = server.data_directory.stat()
    try:
        owner = pwd.getpwuid(status.st_uid).pw_name
    except KeyError:  # an owner without a name: setpriv (util-linux) takes numeric ids
        ids = [f"--reuid={status.st_uid}", f"--regid={status.st_gid}", "--clear-groups"]
        return shlex.join(["setpriv", *ids, "--", *shlex.split(command)])
    return shlex.join(["su", "-s", "/bin/sh", owner, "-c", command])


def describe(server: EmbeddedServer, database: str) -> str:
    """The log line that tells a person how to look at the loaded tables and stop the server;
    both commands work pasted into a shell as they are."""
    socket = quote(server.socket_directory)
    url = f"postgresql://{SUPERUSER}@/{quote(database, safe='')}?host={socket}"
    return (
        f"No host configured: loaded into the embedded PostgreSQL in {server.data_directory}. "
        f"Query it with: psql {shlex.quote(url)}. It keeps running; stop it with: "
        f"{stop_command(server)}"
    )
