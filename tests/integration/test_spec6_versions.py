"""SPEC §6.1/§6.3/§9 with Singer table versions, as found by the kill-point sweep and the model
test: a versioned full refresh swapped in just before the run died (ahead of its next STATE) is
continued, not replaced, by the records the tap sends again; and a record without a table version
is ranked against a versioned row by its cursor (§6.3), not by version 0 < v."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from servers import PgDatabase

from .targetrun import messages, record, run_target, schema_message

pytestmark = pytest.mark.integration

VERSION = 1717000000000
PROPERTIES: dict[str, Any] = {"id": {"type": "integer"}, "updated": {"type": ["integer", "null"]}}


def item(number: int, updated: int | None = None, version: int | None = VERSION) -> Any:
    message = record("items", {"id": number, "updated": updated}, "2024-06-01T00:00:00Z")
    if version is not None:
        message["version"] = version
    return message


def activate() -> dict[str, Any]:
    return {"type": "ACTIVATE_VERSION", "stream": "items", "version": VERSION}


def state(n: int) -> dict[str, Any]:
    return {"type": "STATE", "value": {"n": n}}


def ids(pg_db: PgDatabase) -> list[int]:
    return [i for (i,) in pg_db.admin().execute("SELECT id FROM tap.items ORDER BY id")]


@pytest.mark.parametrize("keys", [[], ["id"]], ids=["keyless", "keyed"])
def test_a_load_swapped_in_before_its_state_is_continued_by_the_resent_records(
    pg_db: PgDatabase, tmp_path: Path, keys: list[str]
) -> None:
    config = pg_db.config(schema="tap", load_method="overwrite", batch_size_rows=1)
    schema = schema_message("items", PROPERTIES, keys)
    died = run_target(
        config,
        messages(schema, item(1), item(2), state(2), item(3), activate()) + "not json\n",
        tmp_path / "1",
    )
    assert died.returncode == 1, died.stderr
    assert died.stdout.splitlines() == ['{"n": 2}']
    assert ids(pg_db) == [1, 2, 3]
    # The tap resumes from {"n": 2}: the rest of the version, then its ACTIVATE_VERSION.
    resumed = run_target(config, messages(schema, item(3), activate(), state(3)), tmp_path / "2")
    assert resumed.returncode == 0, resumed.stderr
    assert "continue the load already in tap.items" in resumed.stderr
    # Keyless streams are at-least-once: record 3 was committed after the last STATE.
    assert ids(pg_db) == ([1, 2, 3] if keys else [1, 2, 3, 3])


def test_a_resent_activate_version_alone_keeps_the_completed_load(
    pg_db: PgDatabase, tmp_path: Path
) -> None:
    config = pg_db.config(schema="tap", load_method="overwrite", batch_size_rows=1)
    schema = schema_message("items", PROPERTIES, ["id"])
    died = run_target(
        config, messages(schema, item(1), state(1), activate()) + "not json\n", tmp_path / "1"
    )
    assert died.returncode == 1, died.stderr
    resumed = run_target(config, messages(schema, activate(), state(2)), tmp_path / "2")
    assert resumed.returncode == 0, resumed.stderr
    assert ids(pg_db) == [1]


def test_a_record_without_a_version_is_ranked_by_its_cursor(
    pg_db: PgDatabase, tmp_path: Path
) -> None:
    schema = {**schema_message("items", PROPERTIES, ["id"]), "bookmark_properties": ["updated"]}
    first = run_target(
        pg_db.config(schema="tap", load_method="overwrite"),
        messages(schema, item(1, updated=None), activate()),
        tmp_path / "1",
    )
    assert first.returncode == 0, first.stderr
    second = run_target(
        pg_db.config(schema="tap"), messages(schema, item(1, 2, version=None)), tmp_path / "2"
    )
    assert second.returncode == 0, second.stderr
    rows = pg_db.admin().execute("SELECT id, updated FROM tap.items").fetchall()
    assert rows == [(1, 2)]
