"""A streaming standby of a test server, made with `pg_basebackup` from the same binaries and
started on its own loopback port, for failover and read-only tests (SPEC §12). A plain
library, like servers.py."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
from servers import (
    PG_START_TIMEOUT_S,
    HarnessError,
    PostgresServer,
    _ClusterLayout,
    _pg_ctl_start,
    _run_as,
    _write_postgresql_conf,
    free_port,
    server_os_user,
)


def start_standby(primary: PostgresServer, root: Path) -> PostgresServer:
    """A hot standby streaming from `primary` (a server this suite started), with the same
    roles and databases; `pg_ctl("promote")` makes it the primary."""
    if primary.data_dir is None or primary.bin_dir is None or primary.socket_dir is None:
        raise HarnessError("a standby needs a primary this suite started")
    owner = server_os_user()
    hba = primary.data_dir / "pg_hba.conf"
    if "replication" not in hba.read_text():
        with hba.open("a", encoding="utf-8") as lines:
            lines.write("local replication all trust\n")
        primary.pg_ctl("reload")
    layout = _ClusterLayout.create(root, owner)
    result = _run_as(
        [
            str(primary.bin_dir / "pg_basebackup"),
            "-D",
            str(layout.data_dir),
            "-h",
            str(primary.socket_dir),
            "-p",
            str(primary.port),
            "-U",
            primary.admin_user,
            "--write-recovery-conf",
            "--wal-method=stream",
            "--checkpoint=fast",
        ],
        owner,
        cwd=layout.run_dir,
    )
    if result.returncode != 0:
        raise HarnessError(f"pg_basebackup failed: {result.stderr.strip()}")
    port = free_port()
    _write_postgresql_conf(layout, port, {})
    _pg_ctl_start(primary.bin_dir, layout, owner)
    standby = PostgresServer(
        version_num=primary.version_num,
        port=port,
        admin_user=primary.admin_user,
        admin_password=primary.admin_password,
        socket_dir=layout.socket_dir,
        data_dir=layout.data_dir,
        kind=primary.kind,
        bin_dir=primary.bin_dir,
        log_path=layout.log_path,
        os_user=owner,
    )
    return standby


def wait_replayed(primary: PostgresServer, standby: PostgresServer, timeout: float = 30) -> None:
    """Until the standby has replayed everything the primary has written so far."""
    with primary.admin_connect() as conn:
        row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
        assert row is not None
        target = row[0]
    deadline = time.monotonic() + timeout
    with standby.admin_connect() as conn:
        while True:
            row = conn.execute(
                "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (target,)
            ).fetchone()
            if row is not None and row[0]:
                return
            if time.monotonic() > deadline:
                raise HarnessError(f"the standby did not replay up to {target} in {timeout} s")
            time.sleep(0.05)


def promote(standby: PostgresServer) -> None:
    """Promote the standby and wait until it takes writes."""
    standby.pg_ctl("promote")
    deadline = time.monotonic() + PG_START_TIMEOUT_S
    while True:
        try:
            with standby.admin_connect() as conn:
                row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
                if row is not None and not row[0]:
                    return
        except psycopg.OperationalError:
            pass
        if time.monotonic() > deadline:
            raise HarnessError("the standby was not promoted in time")
        time.sleep(0.1)
