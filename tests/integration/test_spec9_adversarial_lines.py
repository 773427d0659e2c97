"""SPEC §9 "every input line is bad input, never a crash": bytes a text-mode runner cannot send
(invalid UTF-8), nesting to 1,000 levels and beyond, and config files that are not configs.
Both halves are checked: the clear one-sentence error without a traceback, and nothing lost
before the bad line (its records committed, the last STATE before it emitted)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from servers import PgDatabase

from .targetrun import EXECUTABLE, messages, run_target, schema_message

pytestmark = pytest.mark.integration

SCHEMA = "tap_data"
DOCS = schema_message(
    "docs", {"id": {"type": "integer"}, "body": {"type": "object"}, "note": {"type": "string"}}
)


def run_bytes(config: dict[str, Any], stdin: bytes, workdir: Path) -> tuple[int, str, str]:
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "config.json"
    path.write_text(json.dumps(config))
    done = subprocess.run(
        [str(EXECUTABLE), "--config", str(path)],
        input=stdin,
        capture_output=True,
        env={**os.environ, "TMPDIR": str(workdir)},
        cwd=workdir,
        timeout=120,
        check=False,
    )
    return done.returncode, done.stdout.decode(), done.stderr.decode()


def errors_of(stderr: str) -> list[str]:
    return [line.split("|", 3)[-1].strip() for line in stderr.splitlines() if "| ERROR" in line]


def nested(depth: int) -> str:
    """JSON text of an object nested `depth` levels deep (objects and arrays in turn), as
    PostgreSQL prints a JSONB value."""
    text = '"leaf"'
    for level in range(depth - 1):
        text = f"[{text}]" if level % 2 == 0 else f'{{"k": {text}}}'
    return f'{{"k": {text}}}'


def doc(number: int, body: str, note: str = "n", extra: str = "") -> str:
    return (
        f'{{"type": "RECORD", "stream": "docs", "record": {{"id": {number}{extra},'
        f' "body": {body}, "note": "{note}"}}}}'
    )


@pytest.mark.parametrize("slow", [False, True], ids=["fast-way", "slow-way"])
def test_invalid_utf8_in_a_record_is_bad_input(
    pg_db: PgDatabase, tmp_path: Path, slow: bool
) -> None:
    head = messages(DOCS, doc(1, '{"a": 1}'), {"type": "STATE", "value": {"pos": 1}})
    # NaN sends the line the slow way (it is not JSON, but taps send it).
    extra = ', "x": NaN' if slow else ""
    bad = b'{"type": "RECORD", "stream": "docs", "record": {"id": 2, "note": "caf\xe9"' + (
        extra.encode() + b"}}\n"
    )
    tail = messages(doc(3, "{}"), {"type": "STATE", "value": {"pos": 3}})
    code, stdout, stderr = run_bytes(
        pg_db.config(schema=SCHEMA), head.encode() + bad + tail.encode(), tmp_path
    )
    assert code != 0
    assert "Traceback" not in stderr, stderr
    offset = bad.index(b"\xe9")
    assert errors_of(stderr) == [f"Input line 4: not valid UTF-8 (byte 0xe9 at offset {offset})."]
    assert stdout.splitlines() == ['{"pos": 1}']
    rows = pg_db.admin().execute("SELECT id FROM tap_data.docs").fetchall()
    assert rows == [(1,)]


@pytest.mark.parametrize("slow", [False, True], ids=["fast-way", "slow-way"])
def test_nesting_of_1000_levels_loads_exactly(
    pg_db: PgDatabase, tmp_path: Path, slow: bool
) -> None:
    body = nested(1000)
    # NaN sends the line the slow way (it is not JSON, but taps send it).
    line = doc(1, body, extra=', "x": NaN' if slow else "")
    run = run_target(pg_db.config(schema=SCHEMA), messages(DOCS, line), tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    conn = pg_db.admin()
    assert conn.execute("SELECT body::text FROM tap_data.docs").fetchone() == (body,)
    raw = conn.execute(
        "SELECT (_airbyte_data->'body')::text FROM airbyte_internal.tap_data_raw__stream_docs"
    ).fetchone()
    assert raw == (body,)


def test_nesting_beyond_what_postgresql_takes_is_bad_input(
    pg_db: PgDatabase, tmp_path: Path
) -> None:
    stdin = messages(
        DOCS,
        doc(1, "{}"),
        {"type": "STATE", "value": {"pos": 1}},
        doc(2, nested(200_000)),
        doc(3, "{}"),
    )
    run = run_target(pg_db.config(schema=SCHEMA), stdin, tmp_path)
    assert run.returncode != 0
    assert "Traceback" not in run.stderr
    errors = run.error_lines()
    assert len(errors) == 1, run.stderr[-3000:]
    assert errors[0].startswith("Input line 4: "), errors[0]
    assert "nest" in errors[0], errors[0]
    assert run.stdout.splitlines() == ['{"pos": 1}']
    assert pg_db.admin().execute("SELECT id FROM tap_data.docs").fetchall() == [(1,)]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "does not exist"),
        (
            '{"password": "s3cret"',
            "is not JSON (Expecting ',' delimiter: line 1 column 22 (char 21))",
        ),
        ("[1, 2]", "is not a JSON object"),
        ('"host"', "is not a JSON object"),
    ],
    ids=["missing", "not-json", "array", "string"],
)
def test_a_config_file_that_is_not_a_config_is_one_sentence(
    tmp_path: Path, content: str | None, problem: str
) -> None:
    path = tmp_path / "config.json"
    if content is not None:
        path.write_text(content)
    done = subprocess.run(
        [str(EXECUTABLE), "--config", str(path)],
        input="",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert "s3cret" not in done.stderr
    errors = errors_of(done.stderr)
    assert errors == [f"Config file {path} {problem}: pass a file holding one JSON object."], (
        done.stderr
    )
