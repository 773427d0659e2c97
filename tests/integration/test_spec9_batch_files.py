"""SPEC §9: what a BATCH manifest may name. Entries must be regular files (no device, FIFO,
socket or directory), are read with bounded memory (a JSONL line holds at most 128 MiB), are
never the run's own config or key files, and stay under `batch_root` when it is set. A refused
entry is bad input: every record before the BATCH line is committed, the STATE before it is
emitted, and the run stops naming the line, the file and why; the refused file's content appears
nowhere (no table row, no log line)."""

from __future__ import annotations

import gzip
import json
import os
import socket
import zlib
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from servers import PgDatabase

from .targetrun import Run, live_run, messages, run_target, schema_message

pytestmark = pytest.mark.integration

PROPERTIES = {"id": {"type": "integer"}, "name": {"type": ["string", "null"]}}
SCHEMA = schema_message("users", PROPERTIES, ["id"])
#: What a refused file holds: a record that would load if the file were read.
SECRET = "s3cr3t-never-loaded"
SECRET_LINE = json.dumps({"id": 99, "name": SECRET}) + "\n"


def batch(*uris: str) -> dict[str, Any]:
    return {
        "type": "BATCH",
        "stream": "users",
        "encoding": {"format": "jsonl", "compression": "none"},
        "manifest": list(uris),
    }


def stdin_with(batch_message: dict[str, Any], *, keys: bool = True) -> str:
    """Two records and a STATE, the BATCH (line 5), then a record and a STATE never loaded."""
    return messages(
        SCHEMA if keys else schema_message("users", PROPERTIES),
        {"type": "RECORD", "stream": "users", "record": {"id": 1, "name": "before"}},
        {"type": "RECORD", "stream": "users", "record": {"id": 2, "name": "before"}},
        {"type": "STATE", "value": {"n": 2}},
        batch_message,
        {"type": "RECORD", "stream": "users", "record": {"id": 3, "name": "after"}},
        {"type": "STATE", "value": {"n": 3}},
    )


def rows_holding(conn: psycopg.Connection[Any], text: str) -> list[str]:
    """The tables (of every schema but the system's) with a row whose text holds `text`."""
    tables = conn.execute(
        "SELECT n.nspname, c.relname FROM pg_class AS c"
        " JOIN pg_namespace AS n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p')"
        " AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
    ).fetchall()
    found = []
    for schema, table in tables:
        query = sql.SQL("SELECT count(*) FROM {} AS t WHERE strpos(t::text, %s) > 0").format(
            sql.Identifier(schema, table)
        )
        row = conn.execute(query, (text,)).fetchone()
        if row and row[0]:
            found.append(f"{schema}.{table}")
    return found


def assert_refused(pg_db: PgDatabase, run: Run, problem: str) -> None:
    """The run stopped at line 5 with `problem`, kept everything before it and nothing of the
    refused file."""
    assert run.returncode == 1, run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    assert "MemoryError" not in run.stderr
    errors = run.error_lines()
    assert errors == [f"Input line 5: {problem}."], run.stderr[-3000:]
    assert run.stdout.splitlines() == ['{"n": 2}']
    conn = pg_db.admin()
    rows = conn.execute("SELECT id, name FROM tap_data.users ORDER BY id").fetchall()
    assert rows == [(1, "before"), (2, "before")]
    raw = conn.execute(
        "SELECT _airbyte_data FROM airbyte_internal.tap_data_raw__stream_users"
        " ORDER BY _airbyte_data->>'id'"
    ).fetchall()
    # Each run of a test adds its two records to the raw table.
    assert {json.dumps(row[0]) for row in raw} == {
        '{"id": 1, "name": "before"}',
        '{"id": 2, "name": "before"}',
    }
    assert rows_holding(conn, SECRET) == []
    assert SECRET not in run.output


def test_the_runs_own_config_file_is_refused(pg_db: PgDatabase, tmp_path: Path) -> None:
    workdir = tmp_path / "run"
    config_file = workdir / "config.json"  # where run_target writes the config
    config = pg_db.config(schema="tap_data")
    password = config["password"]
    # Read as a batch file of a stream without keys, the config would load as a record.
    run = run_target(config, stdin_with(batch(config_file.as_uri()), keys=False), workdir)
    assert_refused(
        pg_db,
        run,
        f"batch file {config_file.as_uri()} is a --config file of this run, which a manifest"
        " may never name",
    )
    assert rows_holding(pg_db.admin(), password) == []
    assert password not in run.output


@pytest.mark.parametrize("how", ["symlink", "hard-link", "dot-dot"])
def test_another_path_to_the_config_file_is_refused(
    pg_db: PgDatabase, tmp_path: Path, how: str
) -> None:
    workdir = tmp_path / "run"
    workdir.mkdir()
    config_file = workdir / "config.json"
    config = pg_db.config(schema="tap_data")
    # run_target writes the config file; make the other path to it first.
    config_file.write_text(json.dumps(config))
    other = tmp_path / "elsewhere.jsonl"
    if how == "symlink":
        other.symlink_to(config_file)
    elif how == "hard-link":
        os.link(config_file, other)
    else:
        other = workdir / "tmp" / ".." / "config.json"
    run = run_target(config, stdin_with(batch(other.as_uri())), workdir)
    assert_refused(
        pg_db,
        run,
        f"batch file {other.as_uri()} is a --config file of this run, which a manifest"
        " may never name",
    )
    assert config["password"] not in run.output


def test_key_files_and_their_private_copies_are_refused(pg_db: PgDatabase, tmp_path: Path) -> None:
    """A client key given as a path, and the private copy the run makes of it (SPEC §2)."""
    keys = tmp_path / "keys"
    keys.mkdir()
    key = keys / "client.key"
    key.write_text(SECRET_LINE)
    key.chmod(0o600)
    certificate = keys / "client.crt"
    certificate.write_text(SECRET_LINE)
    # With TLS disabled libpq never reads them, but the run still makes its private copy.
    ssl_mode = {"mode": "disable", "client_certificate": str(certificate), "client_key": str(key)}
    config = pg_db.config(schema="tap_data", ssl_mode=ssl_mode)
    run = run_target(config, stdin_with(batch(key.as_uri())), tmp_path / "by-path")
    assert_refused(
        pg_db,
        run,
        f"batch file {key.as_uri()} is the file of setting ssl_mode.client_key, which a"
        " manifest may never name",
    )
    run = run_target(config, stdin_with(batch(certificate.as_uri())), tmp_path / "by-path-2")
    assert_refused(
        pg_db,
        run,
        f"batch file {certificate.as_uri()} is the file of setting"
        " ssl_mode.client_certificate, which a manifest may never name",
    )
    workdir = tmp_path / "private-copy"
    # Batches of one record: the STATE goes out before the BATCH is sent.
    with live_run({**config, "batch_size_rows": 1}, workdir) as live:
        live.send(*stdin_with(batch("file:///placeholder")).splitlines()[:4])
        live.wait_for_state({"n": 2})
        (copy,) = (workdir / "tmp").glob("target-postgres-hp-*/client.key")
        assert copy.read_text() == SECRET_LINE
        live.send(batch(copy.as_uri()))
        assert live.finish() == 1
        stderr = live.stderr
    assert "Traceback" not in stderr
    errors = [line.split("|", 3)[-1].strip() for line in stderr.splitlines() if "| ERROR" in line]
    assert errors == [
        f"Input line 5: batch file {copy.as_uri()} is in this run's private directory of key"
        " material, which a manifest may never name."
    ]
    assert SECRET not in stderr
    assert rows_holding(pg_db.admin(), SECRET) == []


@pytest.mark.parametrize("kind", ["fifo", "device", "directory", "socket"])
def test_only_regular_files_are_read(pg_db: PgDatabase, tmp_path: Path, kind: str) -> None:
    entry = tmp_path / "entry"
    what = {"fifo": "a FIFO", "device": "a character device", "directory": "a directory"}
    held: socket.socket | None = None
    if kind == "fifo":
        # No writer ever opens it: a blocking open would wait for ever.
        os.mkfifo(entry)
    elif kind == "device":
        entry = Path("/dev/zero")  # read whole, it never ends
    elif kind == "directory":
        entry.mkdir()
    else:
        held = socket.socket(socket.AF_UNIX)
        held.bind(str(entry))
        what["socket"] = "a socket"
    try:
        run = run_target(
            pg_db.config(schema="tap_data"),
            stdin_with(batch(entry.as_uri())),
            tmp_path / "run",
            timeout=60,
        )
    finally:
        if held is not None:
            held.close()
    assert_refused(pg_db, run, f"batch file {entry.as_uri()} is {what[kind]}, not a regular file")


def test_system_files_are_refused(pg_db: PgDatabase, tmp_path: Path) -> None:
    """/proc/self/environ holds the run's environment (with `--config ENV`, its password)."""
    uri = "file:///proc/self/environ"
    run = run_target(pg_db.config(schema="tap_data"), stdin_with(batch(uri)), tmp_path / "run")
    assert run.returncode == 1
    errors = run.error_lines()
    assert len(errors) == 1, run.stderr[-3000:]
    assert errors[0].startswith(f"Input line 5: batch file {uri} is /proc/"), errors
    assert errors[0].endswith(", a file of the system's /proc, not a batch file."), errors
    assert run.stdout.splitlines() == ['{"n": 2}']


def test_a_line_longer_than_the_bound_is_refused(pg_db: PgDatabase, tmp_path: Path) -> None:
    """A gzip bomb: 129 MiB of one line from a file of 130 kB. It is refused once 128 MiB are
    read, whatever follows (a file without line breaks takes no more memory than that)."""
    bomb = tmp_path / "bomb.jsonl.gz"
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    with bomb.open("wb") as out:
        out.write(compressor.compress(b'{"id": 4, "name": "'))
        chunk = b"x" * (1 << 20)
        for _ in range(129):
            out.write(compressor.compress(chunk))
        out.write(compressor.compress(b'"}\n'))
        out.write(compressor.flush())
    assert bomb.stat().st_size < 1 << 20
    message = {**batch(bomb.as_uri()), "encoding": {"format": "jsonl", "compression": "gzip"}}
    run = run_target(pg_db.config(schema="tap_data"), stdin_with(message), tmp_path / "run")
    assert_refused(
        pg_db,
        run,
        f"batch file {bomb.as_uri()}, line 1: longer than 128 MiB, the most a line of a batch"
        " file may hold",
    )


def test_records_of_tens_of_mb_load_from_a_batch(pg_db: PgDatabase, tmp_path: Path) -> None:
    big = "é" * (15 << 20)  # 30 MiB of UTF-8
    part = tmp_path / "part.jsonl.gz"
    part.write_bytes(
        gzip.compress((json.dumps({"id": 5, "name": big}, ensure_ascii=False) + "\n").encode())
    )
    message = {**batch(part.as_uri()), "encoding": {"format": "jsonl", "compression": "gzip"}}
    stdin = messages(SCHEMA, message, {"type": "STATE", "value": {"n": 5}})
    run = run_target(pg_db.config(schema="tap_data", batch_root=str(tmp_path)), stdin, tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.splitlines() == ['{"n": 5}']
    conn = pg_db.admin()
    row = conn.execute("SELECT id, name = %s FROM tap_data.users", (big,)).fetchall()
    assert row == [(5, True)]


def test_batch_root_confines_the_files(pg_db: PgDatabase, tmp_path: Path) -> None:
    root = tmp_path / "batches"
    root.mkdir()
    inside = root / "part.jsonl"
    inside.write_text('{"id": 3, "name": "inside"}\n')
    outside = tmp_path / "outside.jsonl"
    outside.write_text(SECRET_LINE)
    link = root / "link.jsonl"
    link.symlink_to(outside)
    escape = root / ".." / "outside.jsonl"
    # batch_root given through a symlink: it is resolved, and so are the entries.
    root_link = tmp_path / "root-link"
    root_link.symlink_to(root)
    config = pg_db.config(schema="tap_data", batch_root=str(root_link))
    for number, entry in enumerate([outside, link, escape]):
        run = run_target(
            config, stdin_with(batch(inside.as_uri(), entry.as_uri())), tmp_path / f"r{number}"
        )
        assert_refused(
            pg_db,
            run,
            f"batch file {entry.as_uri()} is {outside}, outside batch_root {root}, the one"
            " directory batch files may be in",
        )
    # The file under batch_root loads, with the records around it.
    by_link = root_link / "part.jsonl"
    stdin = messages(
        SCHEMA, batch(inside.as_uri(), by_link.as_uri()), {"type": "STATE", "value": {"n": 3}}
    )
    run = run_target(config, stdin, tmp_path / "good")
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.splitlines() == ['{"n": 3}']
    rows = pg_db.admin().execute("SELECT id, name FROM tap_data.users ORDER BY id").fetchall()
    assert rows == [(1, "before"), (2, "before"), (3, "inside")]


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("", "is empty"),
        ("/does/not/exist", "is '/does/not/exist', which is not an existing directory"),
        ("/etc/hostname", "is '/etc/hostname', which is not an existing directory"),
    ],
)
def test_batch_root_must_be_a_directory(
    pg_db: PgDatabase, tmp_path: Path, value: str, problem: str
) -> None:
    run = run_target(
        pg_db.config(schema="tap_data", batch_root=value), stdin_with(batch()), tmp_path
    )
    assert run.returncode == 1
    assert "Traceback" not in run.stderr
    assert run.error_lines() == [
        f"Setting `batch_root` {problem}: name the directory the tap writes its batch files to,"
        " or remove the setting."
    ]
    assert run.stdout == ""
