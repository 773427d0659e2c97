"""Every runnable example of README.md and docs/*.md runs as written (scripts/check_docs.py
--run --server; tests/unit/test_docs.py runs the static checks): the embedded-server ones in a
throwaway directory, the real-server ones against PostgreSQL 15 with TLS, as a role holding
only `CREATE, TEMPORARY ON DATABASE` (the role docs/security.md tells readers to create)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from servers import PgDatabase, PostgresServer

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "check_docs.py"


def test_runnable_examples_run(pg15_tls: PostgresServer, tmp_path: Path) -> None:
    with PgDatabase.fresh(pg15_tls) as database:
        env = {
            **os.environ,
            "PGHOST": pg15_tls.host,
            "PGPORT": str(pg15_tls.port),
            "PGUSER": database.role.name,
            "PGPASSWORD": database.role.password,
            "PGDATABASE": database.dbname,
            "TMPDIR": "/tmp",
        }
        done = subprocess.run(
            [sys.executable, str(SCRIPT), "--run", "--server", "--no-static"],
            env=env,
            capture_output=True,
            text=True,
            timeout=280,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "ran docs/getting-started.md" in done.stdout
        with database.admin() as conn:
            rows = conn.execute("SELECT id, name FROM analytics.users ORDER BY id").fetchall()
        assert rows == [(1, "Ada Lovelace"), (2, "Grace")]
