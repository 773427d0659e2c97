"""Edge cases of SPEC §6 to §9 found in review: a full refresh resumed from its last STATE, an
ACTIVATE_VERSION after records that lose on the cursor, a key re-created right after its
delete, camelCase keys, a deletion marker typing cannot read, and a trigger on a column that
must widen."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from servers import PgDatabase

from .targetrun import messages, record, run_target, schema_message

pytestmark = pytest.mark.integration

SCHEMA = "tap_data"
T0 = "2024-01-01T00:00:00Z"


def state(n: int) -> dict[str, Any]:
    return {"type": "STATE", "value": {"n": n}}


def activate(stream: str, version: int) -> dict[str, Any]:
    return {"type": "ACTIVATE_VERSION", "stream": stream, "version": version}


def versioned(stream: str, data: dict[str, Any], version: int) -> dict[str, Any]:
    return {**record(stream, data, T0), "version": version}


def run(pg_db: PgDatabase, workdir: Path, *items: Any, **settings: Any) -> Any:
    return run_target({**pg_db.config(schema=SCHEMA), **settings}, messages(*items), workdir)


def rows(pg_db: PgDatabase, query: str) -> list[tuple[Any, ...]]:
    return pg_db.admin().execute(query).fetchall()


ITEMS = schema_message("items", {"id": {"type": "integer"}, "v": {"type": "string"}})


@pytest.mark.parametrize("version", [None, 2], ids=["no_version", "activate_version"])
def test_a_full_refresh_resumed_from_its_last_state(
    pg_db: PgDatabase, tmp_path: Path, version: int | None
) -> None:
    def item(i: int) -> dict[str, Any]:
        data = {"id": i, "v": f"load 2 item {i}"}
        return versioned("items", data, version) if version else record("items", data, T0)

    settings = {"load_method": "overwrite", "batch_size_rows": 2}
    first = run(pg_db, tmp_path / "1", ITEMS, record("items", {"id": 0, "v": "load 1"}, T0))
    assert first.returncode == 0, first.stderr
    opening = [activate("items", version)] if version else []
    broken = run(
        pg_db,
        tmp_path / "2",
        ITEMS,
        *opening,
        item(1),
        item(2),
        state(2),
        item(3),
        state(3),
        "{oops",
        **settings,
    )
    assert broken.returncode == 1, broken.stderr
    # SPEC §6.1: a STATE after a full refresh's records is emitted only when the next run
    # cannot lose them: a load without versions is discarded by the next run, so none is; a
    # versioned one is continued by the same version, so {"n": 2} is (record 3 followed it),
    # but {"n": 3} may follow the load's last record and waits for the replacement.
    assert broken.stdout.splitlines() == (['{"n": 2}'] if version else []), broken.stdout
    assert rows(pg_db, "SELECT id, v FROM tap_data.items") == [(0, "load 1")]
    closing = [activate("items", version)] if version else []
    # The tap resumes from the last STATE the target emitted: after record 2, or from scratch.
    resent = range(3, 6) if version else range(1, 6)
    resumed = run(pg_db, tmp_path / "3", ITEMS, *opening, *map(item, resent), *closing, **settings)
    assert resumed.returncode == 0, resumed.stderr
    # SPEC §6.1: only records of the same table version continue an unfinished load; without
    # versions the run is taken for a restarted full sync, and the unfinished load is discarded.
    # A keyless stream is at-least-once after the last emitted STATE: record 3 came twice.
    kept = [1, 2, 3, 3, 4, 5] if version else [1, 2, 3, 4, 5]
    if not version:
        assert "discarded the unfinished full refresh" in resumed.stderr, resumed.stderr
    expected = [(i, f"load 2 item {i}") for i in kept]
    assert rows(pg_db, "SELECT id, v FROM tap_data.items ORDER BY id") == expected
    raw = rows(
        pg_db,
        "SELECT (_airbyte_data->>'id')::int FROM airbyte_internal.tap_data_raw__stream_items"
        " ORDER BY 1",
    )
    assert raw == [(i,) for i in kept]


def test_activate_version_keeps_the_new_versions_rows_whatever_their_cursor(
    pg_db: PgDatabase, tmp_path: Path
) -> None:
    keyed = schema_message(
        "items", {"id": {"type": "integer"}, "upd": {"type": ["integer", "null"]}}, ["id"]
    )
    keyed["bookmark_properties"] = ["upd"]
    first = run(
        pg_db,
        tmp_path / "1",
        keyed,
        versioned("items", {"id": 1, "upd": 5}, 1),
        versioned("items", {"id": 2, "upd": 5}, 1),
        activate("items", 1),
    )
    assert first.returncode == 0, first.stderr
    second = run(
        pg_db,
        tmp_path / "2",
        keyed,
        versioned("items", {"id": 1, "upd": None}, 2),
        versioned("items", {"id": 2, "upd": 4}, 2),
        activate("items", 2),
    )
    assert second.returncode == 0, second.stderr
    assert rows(
        pg_db, "SELECT id, upd, _airbyte_generation_id FROM tap_data.items ORDER BY id"
    ) == [(1, None, 2), (2, 4, 2)]


DELETABLE = schema_message(
    "items",
    {
        "id": {"type": "integer"},
        "v": {"type": "string"},
        "_sdc_deleted_at": {"type": ["string", "null"], "format": "date-time"},
    },
    ["id"],
)


@pytest.mark.parametrize("batch_size_rows", [1, 10])
def test_a_key_recreated_right_after_its_delete_stays(
    pg_db: PgDatabase, tmp_path: Path, batch_size_rows: int
) -> None:
    result = run(
        pg_db,
        tmp_path / "run",
        DELETABLE,
        record("items", {"id": 1, "v": "created"}, T0),
        record("items", {"id": 1, "v": "deleted", "_sdc_deleted_at": T0}, T0),
        record("items", {"id": 1, "v": "recreated"}, T0),
        batch_size_rows=batch_size_rows,
    )
    assert result.returncode == 0, result.stderr
    assert rows(pg_db, "SELECT id, v FROM tap_data.items") == [(1, "recreated")]


def test_a_deletion_marker_that_typing_cannot_read_still_deletes(
    pg_db: PgDatabase, tmp_path: Path
) -> None:
    result = run(
        pg_db,
        tmp_path / "run",
        DELETABLE,
        record("items", {"id": 1, "v": "kept"}, T0),
        record("items", {"id": 2, "v": "live"}, T0),
        record("items", {"id": 2, "v": "gone", "_sdc_deleted_at": "yes"}, T0),
    )
    assert result.returncode == 0, result.stderr
    assert rows(pg_db, "SELECT id, v FROM tap_data.items ORDER BY id") == [(1, "kept")]


def test_camel_case_key_properties_dedup(pg_db: PgDatabase, tmp_path: Path) -> None:
    accounts = schema_message(
        "accounts", {"userId": {"type": "integer"}, "Name": {"type": "string"}}, ["userId"]
    )
    result = run(
        pg_db,
        tmp_path / "run",
        accounts,
        record("accounts", {"userId": 7, "Name": "first"}, T0),
        record("accounts", {"userId": 7, "Name": "second"}, T0),
    )
    assert result.returncode == 0, result.stderr
    assert rows(pg_db, 'SELECT "userId", "Name" FROM tap_data.accounts') == [(7, "second")]


def test_a_trigger_on_a_column_that_must_widen_stops_the_run_clearly(
    pg_db: PgDatabase, tmp_path: Path
) -> None:
    def amounts(kind: str) -> dict[str, Any]:
        return schema_message("items", {"id": {"type": "integer"}, "amt": {"type": kind}}, ["id"])

    first = run(pg_db, tmp_path / "1", amounts("integer"), record("items", {"id": 1, "amt": 1}))
    assert first.returncode == 0, first.stderr
    loader = pg_db.loader_connect()
    loader.execute(
        "CREATE FUNCTION tap_data.noop() RETURNS trigger LANGUAGE plpgsql"
        " AS 'BEGIN RETURN NEW; END'"
    )
    loader.execute(
        "CREATE TRIGGER keep BEFORE UPDATE OF amt ON tap_data.items"
        " FOR EACH ROW WHEN (OLD.amt IS DISTINCT FROM NEW.amt) EXECUTE FUNCTION tap_data.noop()"
    )
    second = run(pg_db, tmp_path / "2", amounts("string"), record("items", {"id": 2, "amt": "x"}))
    assert second.returncode == 1, second.stderr
    assert "Traceback" not in second.stderr
    errors = second.error_lines()
    assert len(errors) == 1, second.stderr
    assert errors[0].startswith(
        "The target must change the type of tap_data.items column amt to VARCHAR, but"
        " PostgreSQL refuses: cannot alter type of a column used in a trigger definition."
        " Nothing was changed"
    ), errors
    assert rows(
        pg_db,
        "SELECT data_type FROM information_schema.columns"
        " WHERE table_name = 'items' AND column_name = 'amt'",
    ) == [("bigint",)]
    assert rows(pg_db, "SELECT id, amt FROM tap_data.items") == [(1, 1)]
