"""SPEC §9: Singer BATCH messages load exactly as the same records sent as RECORD lines, in order
with the messages around them; a batch file the target cannot read is bad input naming the line
and the file, with nothing of that BATCH committed."""

from __future__ import annotations

import gzip
import json
import subprocess
import time
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import simplejson
from psycopg import sql
from servers import PgDatabase

from .targetrun import EXECUTABLE, live_run, messages, run_target, schema_message

PROPERTIES: dict[str, Any] = {
    "id": {"type": "integer"},
    "name": {"type": ["string", "null"]},
    "amount": {"type": ["number", "null"]},
    "big": {"type": ["number", "null"]},
    "flag": {"type": ["boolean", "null"]},
    "tags": {"type": ["array", "null"], "items": {"type": "string"}},
    "obj": {"type": ["object", "null"], "properties": {}},
    "ts": {"type": ["string", "null"], "format": "date-time"},
}

#: Records as a tap writes them, one JSON text a line: exact decimals, integers beyond 64
#: bits, NUL characters (in a value and in a key), NaN/Infinity, a value typing must NULL, a
#: property the schema lacks, non-BMP characters.
RECORD_TEXTS = [
    '{"id": 1, "name": "plain", "amount": 1.10, "big": 12345678901234567890.123456789,'
    ' "flag": true, "tags": ["a", "b"], "obj": {"k": 1.5e3, "deep": [0.1, 2]},'
    ' "ts": "2024-05-01T10:00:00+00:00"}',
    '{"id": 2, "name": "nul\\u0000in", "amount": NaN, "big": 123456789012345678901234567890,'
    ' "obj": {"k\\u0000ey": Infinity}}',
    '{"id": 3, "name": null, "amount": -Infinity, "big": 1E-7, "flag": false, "tags": [],'
    ' "ts": "2024-05-02T00:00:00Z"}',
    '{"id": 4, "name": "typed away", "amount": "not a number", "big": 0.30000000000000004,'
    ' "extra": {"x": 1}}',
    '{"id": 5, "name": "\\ud83d\\ude00 emoji", "amount": 0, "big": -0.0}',
]

UTC = timezone.utc

#: Records as a tap hands them to pyarrow: one type a column, decimals of one scale.
PARQUET_RECORDS: list[dict[str, Any]] = [
    {
        "id": 1,
        "name": "plain",
        "amount": 1.1,
        "big": Decimal("12345678901234567890.123456789"),
        "flag": True,
        "tags": ["a", "b"],
        "obj": {"k": 1500.0},
        "ts": datetime(2024, 5, 1, 10, tzinfo=UTC),
    },
    {
        "id": 2,
        "name": "nul\x00in",
        "amount": float("nan"),
        "big": Decimal("-0.500000000"),
        "flag": None,
        "tags": [],
        "obj": {"k": float("inf")},
        "ts": None,
    },
    {
        "id": 3,
        "name": None,
        "amount": 0.30000000000000004,
        "big": None,
        "flag": False,
        "tags": None,
        "obj": None,
        "ts": datetime(2024, 5, 2, tzinfo=UTC),
    },
]


def record_line(stream: str, text: str) -> str:
    return f'{{"type": "RECORD", "stream": "{stream}", "record": {text}}}'


def batch_message(
    stream: str, files: list[Path], file_format: str = "jsonl", compression: str | None = None
) -> dict[str, Any]:
    return {
        "type": "BATCH",
        "stream": stream,
        "encoding": {"format": file_format, "compression": compression},
        "manifest": [path.as_uri() for path in files],
    }


def write_jsonl(path: Path, texts: list[str], *, gzipped: bool) -> Path:
    data = "".join(text + "\n" for text in texts).encode()
    path.write_bytes(gzip.compress(data) if gzipped else data)
    return path


def write_parquet(path: Path, records: list[dict[str, Any]]) -> Path:
    pq.write_table(pa.Table.from_pylist(records), path)
    return path


def raw_table(stream: str) -> sql.Identifier:
    return sql.Identifier("airbyte_internal", f"tap_data_raw__stream_{stream}")


def final_layout(conn: psycopg.Connection[Any], stream: str) -> list[tuple[str, str]]:
    return conn.execute(
        "SELECT column_name, data_type FROM information_schema.columns"
        " WHERE table_schema = 'tap_data' AND table_name = %s ORDER BY ordinal_position",
        (stream,),
    ).fetchall()


def final_values(conn: psycopg.Connection[Any], stream: str) -> list[list[tuple[str, str, type]]]:
    """Every final row, value by value (as its repr: Decimal NaN equals no other NaN) with its
    Python type, but the raw id, the extraction time and the meta's sync id (which differ
    between two loads of the same records)."""
    cursor = conn.execute(
        sql.SQL("SELECT * FROM {} ORDER BY id").format(sql.Identifier("tap_data", stream))
    )
    names = [column.name for column in cursor.description or []]
    skipped = {"_airbyte_raw_id", "_airbyte_extracted_at"}
    return [
        [
            (name, repr(value["changes"] if name == "_airbyte_meta" else value), type(value))
            for name, value in zip(names, row, strict=True)
            if name not in skipped
        ]
        for row in cursor.fetchall()
    ]


def raw_values(conn: psycopg.Connection[Any], stream: str) -> list[tuple[Any, ...]]:
    """Every raw row's data, meta changes (not its sync id) and generation, and whether it
    was typed."""
    rows = conn.execute(
        sql.SQL(
            "SELECT _airbyte_data, _airbyte_meta, _airbyte_generation_id,"
            " _airbyte_loaded_at IS NOT NULL FROM {} ORDER BY (_airbyte_data->>'id')::int"
        ).format(raw_table(stream))
    ).fetchall()
    return [(data, meta["changes"], generation, typed) for data, meta, generation, typed in rows]


def assert_loaded_alike(pg_db: PgDatabase, by_records: str, by_batch: str) -> None:
    conn = pg_db.admin()
    layout = final_layout(conn, by_records)
    assert layout
    assert final_layout(conn, by_batch) == layout
    final = final_values(conn, by_records)
    assert final
    assert final_values(conn, by_batch) == final
    raw = raw_values(conn, by_records)
    assert raw_values(conn, by_batch) == raw


def load_both_ways(
    pg_db: PgDatabase, tmp_path: Path, record_texts: list[str], batch: dict[str, Any]
) -> None:
    """Load the records as RECORD lines into stream `by_records` and as `batch` into stream
    `by_batch`, in one run."""
    stdin = messages(
        schema_message("by_records", PROPERTIES, ["id"]),
        schema_message("by_batch", PROPERTIES, ["id"]),
        *(record_line("by_records", text) for text in record_texts),
        batch,
        {"type": "STATE", "value": {"done": True}},
    )
    run = run_target(pg_db.config(schema="tap_data"), stdin, tmp_path / "run")
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == ['{"done": true}']
    assert_loaded_alike(pg_db, "by_records", "by_batch")


@pytest.mark.parametrize(
    ("compression", "gzipped", "file_count"),
    [
        pytest.param("none", False, 1, id="plain"),
        pytest.param("gzip", True, 1, id="gzip"),
        pytest.param("gzip", True, 3, id="gzip-three-files"),
        # The SDK's JSONL batcher gzips whatever its compression setting says.
        pytest.param(None, True, 2, id="gzip-declared-none"),
    ],
)
def test_jsonl_batch_loads_as_record_lines(
    pg_db: PgDatabase, tmp_path: Path, compression: str | None, gzipped: bool, file_count: int
) -> None:
    chunks = [RECORD_TEXTS[start::file_count] for start in range(file_count)]
    files = [
        write_jsonl(tmp_path / f"part{number}.jsonl", chunk, gzipped=gzipped)
        for number, chunk in enumerate(chunks)
    ]
    # The manifest's order is the load order: the RECORD lines come in the same order.
    texts = [text for chunk in chunks for text in chunk]
    load_both_ways(pg_db, tmp_path, texts, batch_message("by_batch", files, "jsonl", compression))
    conn = pg_db.admin()
    big = conn.execute("SELECT big FROM tap_data.by_batch WHERE id = 1").fetchone()
    assert big == (Decimal("12345678901234567890.123456789"),)
    data, meta = conn.execute(
        sql.SQL(
            "SELECT _airbyte_data, _airbyte_meta FROM {} WHERE _airbyte_data->>'id' = '2'"
        ).format(raw_table("by_batch"))
    ).fetchone() or (None, None)
    assert data == {
        "id": 2,
        "name": "nulin",
        "amount": "NaN",
        "big": 123456789012345678901234567890,
        "obj": {"key": "Infinity"},
    }
    changed = {"change": "TRUNCATED", "reason": "DESTINATION_SERIALIZATION_ERROR"}
    assert meta["changes"] == [
        {"field": "name", **changed},
        {"field": "amount", **changed},
        {"field": "obj", **changed},
    ]


def test_parquet_batch_loads_as_record_lines(pg_db: PgDatabase, tmp_path: Path) -> None:
    files = [
        write_parquet(tmp_path / "part1.parquet", PARQUET_RECORDS[:2]),
        write_parquet(tmp_path / "part2.parquet", PARQUET_RECORDS[2:]),
    ]
    # The RECORD lines the same tap would write: floats at their shortest, datetimes ISO.
    texts = [
        simplejson.dumps(
            record,
            use_decimal=True,
            allow_nan=True,
            default=lambda value: value.isoformat(sep="T"),
        )
        for record in PARQUET_RECORDS
    ]
    load_both_ways(pg_db, tmp_path, texts, batch_message("by_batch", files, "parquet", "none"))
    rows = (
        pg_db.admin()
        .execute("SELECT id, amount::text, big::text, name, ts FROM tap_data.by_batch ORDER BY id")
        .fetchall()
    )
    assert rows == [
        (1, "1.1", "12345678901234567890.123456789", "plain", datetime(2024, 5, 1, 10, tzinfo=UTC)),
        (2, "NaN", "-0.500000000", "nulin", None),
        (3, "0.30000000000000004", None, None, datetime(2024, 5, 2, tzinfo=UTC)),
    ]


def test_state_after_a_batch_waits_for_its_records(pg_db: PgDatabase, tmp_path: Path) -> None:
    batch_file = write_jsonl(
        tmp_path / "three.jsonl",
        [f'{{"id": {n}, "name": "b{n}"}}' for n in (1, 2, 3)],
        gzipped=False,
    )
    config = pg_db.config(schema="tap_data", batch_size_rows=2)
    with live_run(config, tmp_path / "run") as run:
        run.send(
            schema_message("users", PROPERTIES, ["id"]),
            {"type": "STATE", "value": {"n": 0}},
            batch_message("users", [batch_file]),
            {"type": "STATE", "value": {"n": 3}},
        )
        run.wait_for_state({"n": 0})
        # Records 1 and 2 fill a batch and commit; record 3 waits for the next one, and so
        # does the STATE after the BATCH.
        conn = pg_db.admin()
        count = sql.SQL("SELECT count(*) FROM {}").format(raw_table("users"))
        deadline = time.monotonic() + 30
        while (conn.execute(count).fetchone() or (0,))[0] < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1)
        assert conn.execute(count).fetchone() == (2,)
        # Nothing more on stdout: the queue holds every line the target wrote since.
        assert run._lines.empty(), run.stderr
        run.send({"type": "RECORD", "stream": "users", "record": {"id": 4, "name": "r4"}})
        run.wait_for_state({"n": 3})
        assert conn.execute(count).fetchone() == (4,)
        assert run.finish() == 0, run.stderr
    ids = conn.execute("SELECT id FROM tap_data.users ORDER BY id").fetchall()
    assert ids == [(1,), (2,), (3,), (4,)]


GOOD = ['{"id": 10, "name": "good"}', '{"id": 11, "name": "good"}', '{"id": 12, "name": "ok"}']


def bad_batch(tmp_path: Path, case: str) -> tuple[dict[str, Any], str]:
    """A BATCH the target must refuse, and the problem its error names after the line."""
    good = write_jsonl(tmp_path / "good.jsonl", GOOD, gzipped=False)
    bad = tmp_path / "bad.jsonl"
    if case == "missing-file":
        files = [good, bad]
        return batch_message("users", files), (
            f"batch file {bad.as_uri()} cannot be read (No such file or directory)"
        )
    if case == "corrupt-gzip":
        bad.write_bytes(gzip.compress("".join(f"{text}\n" for text in GOOD).encode())[:-12])
        return batch_message("users", [bad], "jsonl", "gzip"), (
            f"batch file {bad.as_uri()} cannot be read past line"
        )
    if case == "bad-json-line":
        write_jsonl(good, GOOD, gzipped=True)
        write_jsonl(bad, [GOOD[0], '{"id": 13, "name": "cut'], gzipped=True)
        return batch_message("users", [good, bad], "jsonl", "gzip"), (
            f"batch file {bad.as_uri()}, line 2: not valid JSON"
        )
    if case == "bad-json-mid-file":
        write_jsonl(bad, [*GOOD, '{"id": 13}', "{not json}", '{"id": 14}'], gzipped=False)
        return batch_message("users", [bad]), (f"batch file {bad.as_uri()}, line 5: not valid JSON")
    if case == "before-schema":
        return batch_message("orders", [good]), (
            "BATCH for stream orders arrived before that stream's SCHEMA message"
        )
    if case == "not-an-object":
        write_jsonl(bad, [GOOD[0], "[1, 2]"], gzipped=False)
        return batch_message("users", [good, bad]), (
            f"batch file {bad.as_uri()}, line 2: a record must be a JSON object"
        )
    if case == "missing-key":
        write_jsonl(bad, [GOOD[0], '{"name": "no id"}'], gzipped=False)
        return batch_message("users", [good, bad]), (
            f"batch file {bad.as_uri()}, line 2: record of stream users has no value for key"
            " property id"
        )
    if case == "corrupt-parquet":
        bad.write_bytes(b"PAR1 not really parquet PAR1")
        return batch_message("users", [bad], "parquet"), (
            f"batch file {bad.as_uri()} cannot be read (Parquet file size is"
        )
    if case == "unknown-format":
        return batch_message("users", [good], "csv"), (
            "BATCH for stream users has encoding format 'csv', which this target cannot read"
            " (it reads jsonl and parquet)"
        )
    if case == "unknown-compression":
        return batch_message("users", [good], "jsonl", "zstd"), (
            "BATCH for stream users has compression 'zstd', which this target cannot read"
            " (it reads gzip and none)"
        )
    assert case == "not-a-file-uri"
    message = {**batch_message("users", [good]), "manifest": ["s3://bucket/part.jsonl"]}
    return message, (
        "BATCH for stream users names 's3://bucket/part.jsonl', which is not a file:// URI of a"
        " local file (this target reads only local batch files)"
    )


@pytest.mark.parametrize(
    "case",
    [
        "missing-file",
        "corrupt-gzip",
        "bad-json-line",
        "bad-json-mid-file",
        "before-schema",
        "not-an-object",
        "missing-key",
        "corrupt-parquet",
        "unknown-format",
        "unknown-compression",
        "not-a-file-uri",
    ],
)
def test_unreadable_batch_is_bad_input(pg_db: PgDatabase, tmp_path: Path, case: str) -> None:
    batch, problem = bad_batch(tmp_path, case)
    stdin = messages(
        schema_message("users", PROPERTIES, ["id"]),
        {"type": "RECORD", "stream": "users", "record": {"id": 1, "name": "before"}},
        {"type": "RECORD", "stream": "users", "record": {"id": 2, "name": "before"}},
        {"type": "STATE", "value": {"n": 2}},
        batch,
        {"type": "RECORD", "stream": "users", "record": {"id": 3, "name": "after"}},
        {"type": "STATE", "value": {"n": 3}},
    )
    # Batches of two: the good file's records would fill one before the bad file is reached.
    config = pg_db.config(schema="tap_data", batch_size_rows=2)
    run = run_target(config, stdin, tmp_path / "run")
    assert run.returncode == 1
    assert "Traceback" not in run.stderr
    assert run.stdout.splitlines() == ['{"n": 2}']
    errors = run.error_lines()
    assert len(errors) == 1, run.stderr
    assert errors[0].startswith(f"Input line 5: {problem}"), errors
    assert errors[0].endswith(".")
    rows = pg_db.admin().execute(
        sql.SQL("SELECT _airbyte_data->>'id' FROM {}").format(raw_table("users"))
    )
    assert sorted(row[0] for row in rows.fetchall()) == ["1", "2"]


def test_parquet_without_pyarrow_says_what_to_install(pg_db: PgDatabase, tmp_path: Path) -> None:
    hidden = tmp_path / "hide_pyarrow" / "pyarrow"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text('raise ImportError("pyarrow is not installed")\n')
    parquet_file = write_parquet(tmp_path / "part.parquet", PARQUET_RECORDS)
    stdin = messages(
        schema_message("users", PROPERTIES, ["id"]),
        {"type": "STATE", "value": {"n": 0}},
        batch_message("users", [parquet_file], "parquet"),
    )
    run = run_target(
        pg_db.config(schema="tap_data"),
        stdin,
        tmp_path / "run",
        env={"PYTHONPATH": str(hidden.parent)},
    )
    assert run.returncode == 1
    assert "Traceback" not in run.stderr
    assert run.stdout.splitlines() == ['{"n": 0}']
    assert run.error_lines() == [
        "Input line 3: BATCH for stream users holds Parquet files, which need pyarrow: install"
        " target-postgres-hp[parquet]."
    ]


def test_about_lists_the_batch_capability() -> None:
    about = subprocess.run(
        [str(EXECUTABLE), "--about", "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert "batch" in json.loads(about.stdout)["capabilities"]
