"""SPEC §11: with no host, the target loads into an embedded PostgreSQL and says how to reach it."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import psycopg
import pytest

from .targetrun import raw_data, run_target, users_stream

pytestmark = pytest.mark.integration


def stop_embedded(data_dir: Path, stderr: str) -> None:
    match = re.search(r"stop it with: (\S+) -D (\S+) stop", stderr)
    assert match, stderr
    command = [match.group(1), "-D", match.group(2), "stop", "-m", "fast"]
    if os.geteuid() == 0:
        command = ["runuser", "-u", "pgserver", "--", *command]
    subprocess.run(command, check=True, capture_output=True)


def test_no_host_loads_into_the_embedded_server(tmp_path: Path) -> None:
    data_dir = tmp_path / "pgdata"
    config = {"embedded_data_directory": str(data_dir), "database": "demo"}
    run = run_target(config, users_stream(3), tmp_path / "run")
    assert run.returncode == 0, run.stderr
    try:
        match = re.search(r"Query it with: psql '([^']+)'", run.stderr)
        assert match, run.stderr
        assert f"loaded into the embedded PostgreSQL in {data_dir}" in run.stderr
        with psycopg.connect(match.group(1)) as conn:
            rows = raw_data(conn, "public_raw__stream_users")
            assert [row["id"] for row in rows] == [1, 2, 3]
            assert conn.execute("SHOW server_version_num").fetchone()[0] >= "160000"
        again = run_target(config, users_stream(2), tmp_path / "again")
        assert again.returncode == 0, again.stderr
        with psycopg.connect(match.group(1)) as conn:
            assert len(raw_data(conn, "public_raw__stream_users")) == 5
    finally:
        stop_embedded(data_dir, run.stderr)
