"""The embedded default: with no `host`, load into a local PostgreSQL from the `pgserver` wheel.

A newcomer can run a whole pipeline with nothing to set up. The server listens on a Unix
socket only (no network exposure), keeps running after the run so the tables can be queried,
and is found again by the next run that names the same data directory.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from target_postgres_hp.errors import EmbeddedServerError

logger = logging.getLogger("target-postgres-hp.embedded")

SUPERUSER = "postgres"


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
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # cleanup_mode=None keeps the server up after this run so its tables can be queried.
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


def describe(server: EmbeddedServer, database: str) -> str:
    """The log line that tells a person how to look at the loaded tables."""
    run_as = " as the pgserver system user" if os.geteuid() == 0 else ""
    return (
        f"No host configured: loaded into the embedded PostgreSQL in {server.data_directory}. "
        f"Query it with: psql 'postgresql://{SUPERUSER}@/{database}?host="
        f"{server.socket_directory}'. It keeps running; stop it with: "
        f"{server.pg_ctl} -D {server.data_directory} stop{run_as}."
    )
