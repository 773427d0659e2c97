"""Run the real `target-postgres-hp` command as a user would, and read what it left behind."""

from __future__ import annotations

import fcntl
import json
import os
import queue
import struct
import subprocess
import sys
import termios
import threading
import time as clock
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

EXECUTABLE = Path(sys.executable).with_name("target-postgres-hp")

#: A raw table's columns as `information_schema` shows them: name, data type, nullable (SPEC §4.1).
RAW_LAYOUT = [
    ("_airbyte_raw_id", "character varying", "NO"),
    ("_airbyte_extracted_at", "timestamp with time zone", "NO"),
    ("_airbyte_loaded_at", "timestamp with time zone", "YES"),
    ("_airbyte_data", "jsonb", "NO"),
    ("_airbyte_meta", "jsonb", "NO"),
    ("_airbyte_generation_id", "bigint", "NO"),
]

#: The `_airbyte_` columns that end a final table: name, data type (SPEC §4.2).
META_COLUMNS = [
    ("_airbyte_raw_id", "character varying"),
    ("_airbyte_extracted_at", "timestamp with time zone"),
    ("_airbyte_meta", "jsonb"),
    ("_airbyte_generation_id", "bigint"),
]


@dataclass(frozen=True)
class Run:
    """What one run of the target printed and returned."""

    returncode: int
    stdout: str
    stderr: str
    tmpdir: Path

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def error_lines(self) -> list[str]:
        """The ERROR log lines, message part only."""
        return [
            line.split("|", 3)[-1].strip() for line in self.stderr.splitlines() if "| ERROR" in line
        ]


def messages(*items: dict[str, Any] | str) -> str:
    """Singer lines from message dicts (or ready JSON text)."""
    return "".join((item if isinstance(item, str) else json.dumps(item)) + "\n" for item in items)


def schema_message(
    stream: str, properties: dict[str, Any], keys: list[str] | None = None
) -> dict[str, Any]:
    """A SCHEMA message for `stream` with these top-level properties and keys."""
    return {
        "type": "SCHEMA",
        "stream": stream,
        "schema": {"type": "object", "properties": properties},
        "key_properties": keys or [],
    }


def record(stream: str, data: dict[str, Any], time_extracted: str | None = None) -> dict[str, Any]:
    """A RECORD message, with `time_extracted` when given."""
    message: dict[str, Any] = {"type": "RECORD", "stream": stream, "record": data}
    if time_extracted is not None:
        message["time_extracted"] = time_extracted
    return message


def users_stream(count: int = 3, stream: str = "users") -> str:
    """A SCHEMA, `count` RECORDs and a STATE for a small users stream."""
    schema = {
        "type": "SCHEMA",
        "stream": stream,
        "schema": {
            "properties": {
                "id": {"type": "integer"},
                "name": {"type": ["string", "null"]},
                "amount": {"type": "number"},
            }
        },
        "key_properties": ["id"],
    }
    records = [
        {
            "type": "RECORD",
            "stream": stream,
            "record": {"id": i, "name": f"user {i}", "amount": float(f"{i}.25")},
            "time_extracted": f"2024-05-0{1 + i % 8}T10:00:00+00:00",
        }
        for i in range(1, count + 1)
    ]
    return messages(schema, *records, {"type": "STATE", "value": {"users": count}})


def run_target(
    config: dict[str, Any],
    stdin: str,
    workdir: Path,
    *,
    env: dict[str, str] | None = None,
    timeout: float = 120,
) -> Run:
    """Run the target with `config` and `stdin`; its temp files go to a private TMPDIR."""
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "config.json"
    config_path.write_text(json.dumps(config))
    tmpdir = workdir / "tmp"
    tmpdir.mkdir(exist_ok=True)
    full_env = {**os.environ, "TMPDIR": str(tmpdir), **(env or {})}
    try:
        done = subprocess.run(
            [str(EXECUTABLE), "--config", str(config_path)],
            input=stdin,
            capture_output=True,
            text=True,
            env=full_env,
            timeout=timeout,
            cwd=workdir,
            check=False,
        )
    finally:
        config_path.unlink()
    return Run(done.returncode, done.stdout, done.stderr, tmpdir)


def raw_rows(
    conn: psycopg.Connection[Any], table: str, schema: str = "airbyte_internal"
) -> list[Any]:
    """All rows of a raw table, oldest id first."""
    return conn.execute(
        psycopg.sql.SQL(
            "SELECT _airbyte_raw_id, _airbyte_extracted_at, _airbyte_loaded_at, _airbyte_data,"
            " _airbyte_meta, _airbyte_generation_id FROM {} ORDER BY _airbyte_raw_id"
        ).format(psycopg.sql.Identifier(schema, table))
    ).fetchall()


def raw_data(
    conn: psycopg.Connection[Any], table: str, schema: str = "airbyte_internal"
) -> list[Any]:
    """The `_airbyte_data` of every raw row, in arrival order."""
    return [row[3] for row in raw_rows(conn, table, schema)]


class LiveRun:
    """The target as a subprocess whose standard input the test feeds piece by piece."""

    def __init__(self, config: dict[str, Any], workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        config_path = workdir / "config.json"
        config_path.write_text(json.dumps(config))
        tmpdir = workdir / "tmp"
        tmpdir.mkdir(exist_ok=True)
        self.stderr_path = workdir / "stderr"
        self._stderr = self.stderr_path.open("w")
        self.process = subprocess.Popen(
            [str(EXECUTABLE), "--config", str(config_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env={**os.environ, "TMPDIR": str(tmpdir)},
            cwd=workdir,
        )
        self.stdout: list[str] = []
        #: When each stdout line first came (`time.monotonic()`), by its text.
        self.arrivals: dict[str, float] = {}
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            text = line.rstrip("\n")
            self.arrivals.setdefault(text, clock.monotonic())
            self._lines.put(text)
        self._lines.put(None)

    @property
    def stderr(self) -> str:
        self._stderr.flush()
        return self.stderr_path.read_text()

    def send(self, *items: Any) -> None:
        """Write messages: dicts, JSON text, or objects with a `message()` giving a dict."""
        assert self.process.stdin is not None
        self.process.stdin.write(
            messages(*(item.message() if hasattr(item, "message") else item for item in items))
        )
        self.process.stdin.flush()

    def wait_for_state(self, value: Any, timeout: float = 30) -> None:
        """Read stdout until the target emits this state value."""
        deadline = clock.monotonic() + timeout
        while True:
            remaining = deadline - clock.monotonic()
            if remaining <= 0:
                pytest.fail(
                    f"no STATE {value} within {timeout} s; got {self.stdout}\n{self.stderr}"
                )
            try:
                line = self._lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                pytest.fail(f"the target ended before emitting STATE {value}:\n{self.stderr}")
            self.stdout.append(line)
            if line.strip() and json.loads(line) == value:
                return

    def wait_until_idle(self, timeout: float = 30) -> None:
        """Until the target has read and handled every line sent so far: the pipe is empty
        and the process waits for more input (stable over a few looks)."""
        assert self.process.stdin is not None
        fd = self.process.stdin.fileno()
        deadline = clock.monotonic() + timeout
        calm = 0
        while calm < 4:
            assert self.process.poll() is None, self.stderr
            assert clock.monotonic() < deadline, "the target never went idle"
            (unread,) = struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))
            calm = calm + 1 if unread == 0 and reading_stdin(self.process.pid) else 0
            clock.sleep(0.02)

    def finish(self, timeout: float = 120) -> int:
        """Close stdin (end of input), wait for the exit and collect the rest of stdout."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        returncode = self.process.wait(timeout=timeout)
        while (line := self._lines.get(timeout=timeout)) is not None:
            self.stdout.append(line)
        return returncode

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)
        self._stderr.close()


@contextmanager
def live_run(config: dict[str, Any], workdir: Path) -> Iterator[LiveRun]:
    run = LiveRun(config, workdir)
    try:
        yield run
    finally:
        run.close()


def column_types(conn: psycopg.Connection[Any], schema: str, table: str) -> list[tuple[str, str]]:
    """A table's columns in order, with their data types as `information_schema` shows them."""
    return [
        (name, data_type)
        for name, data_type in conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
            (schema, table),
        ).fetchall()
    ]


def tables_in(conn: psycopg.Connection[Any], schema: str) -> list[str]:
    """The ordinary tables of a schema, by name."""
    return [
        name
        for (name,) in conn.execute(
            "SELECT c.relname FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relkind IN ('r', 'p') ORDER BY c.relname",
            (schema,),
        ).fetchall()
    ]


def wait_for_no_loader(admin: psycopg.Connection[Any], role: str, timeout: float = 30) -> None:
    """Until the server has ended every session of the loader `role` (a killed run's too),
    polling on the superuser connection `admin`."""
    query = "SELECT count(*) FROM pg_stat_activity WHERE usename = %s"
    deadline = clock.monotonic() + timeout
    while (found := admin.execute(query, (role,)).fetchone()) and found[0]:
        assert clock.monotonic() < deadline, "the killed run's sessions are still there"
        clock.sleep(0.05)


#: Where the kernel shows a process waiting for its input: reading the pipe, or waiting in
#: select() for it until a staged batch is due (SPEC §12).
_INPUT_WAITS = ("pipe_read", "do_select", "poll_schedule_timeout")


def reading_stdin(pid: int) -> bool:
    """Whether the process's main thread is blocked waiting for an empty pipe (its stdin)."""
    try:
        wchan = Path(f"/proc/{pid}/wchan").read_text()
    except OSError:
        return False
    return any(wait in wchan for wait in _INPUT_WAITS)
