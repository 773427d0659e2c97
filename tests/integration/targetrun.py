"""Run the real `target-postgres-hp` command as a user would, and read what it left behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

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
