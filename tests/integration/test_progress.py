"""Progress a person can follow: a closing line per stream with its records, where they went,
the time taken and how many values typing NULLed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from servers import PgDatabase

from .targetrun import messages, record, run_target, schema_message

pytestmark = pytest.mark.integration


def test_each_stream_ends_with_a_summary_line(pg_db: PgDatabase, tmp_path: Path) -> None:
    items = [record("users", {"id": i, "age": "old" if i % 2 else i}) for i in range(1, 6)]
    stdin = messages(
        schema_message("users", {"id": {"type": "integer"}, "age": {"type": "integer"}}, ["id"]),
        schema_message("empty", {"id": {"type": "integer"}}),
        *items,
    )
    run = run_target(
        {**pg_db.config(schema="tap_data"), "batch_size_rows": 2}, stdin, tmp_path / "run"
    )
    assert run.returncode == 0, run.stderr
    summaries = re.findall(r"\| (Stream \S+ done: .*)$", run.stderr, flags=re.MULTILINE)
    assert len(summaries) == 2, run.stderr
    users = next(line for line in summaries if line.startswith("Stream users "))
    assert re.fullmatch(
        r"Stream users done: 5 records committed to tap_data\.users"
        r" \(raw table airbyte_internal\.tap_data_raw__stream_users\) in [\d.]+ s;"
        r" 3 values NULLed by typing in 3 rows \(see _airbyte_meta\)",
        users,
    ), users
    empty = next(line for line in summaries if line.startswith("Stream empty "))
    assert empty.startswith("Stream empty done: 0 records committed to tap_data.empty "), empty
    nulled = pg_db.admin().execute(
        "SELECT count(*) FROM tap_data.users WHERE age IS NULL"
        " AND jsonb_array_length(_airbyte_meta->'changes') = 1"
    )
    assert nulled.fetchone() == (3,)
