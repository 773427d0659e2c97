"""SPEC §1/§6.3: on servers before PostgreSQL 15 (no NULLS NOT DISTINCT) the key index is built
from `COALESCE(k, stand-in)` and `k IS NULL` terms, so NULL key components still compare equal.
That path is exercised here on PostgreSQL 16 by making the connector take the older path; the
target runs in-process for that."""

from __future__ import annotations

import io
from typing import Any

import pytest
from servers import PgDatabase

from target_postgres_hp.connector import PostgresConnector
from target_postgres_hp.target import TargetPostgresHP

from .targetrun import messages, record, schema_message

pytestmark = pytest.mark.integration

PAIRS = schema_message(
    "pairs",
    {
        "a": {"type": ["integer", "null"]},
        "b": {"type": ["string", "null"]},
        "v": {"type": "string"},
        "_sdc_deleted_at": {"type": ["string", "null"], "format": "date-time"},
    },
    ["a", "b"],
)
T0, T1, T2 = "2023-12-31T00:00:00Z", "2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z"


def load(pg_db: PgDatabase, *items: dict[str, Any], batch_size_rows: int) -> None:
    config = pg_db.config(schema="tap_data", batch_size_rows=batch_size_rows)
    target = TargetPostgresHP(config=config, validate_config=True)
    try:
        target.listen(io.StringIO(messages(*items)))
    finally:
        target.dispose()


@pytest.mark.parametrize("batch_size_rows", [1, 100])
def test_null_key_components_compare_equal_without_nulls_not_distinct(
    pg_db: PgDatabase, monkeypatch: pytest.MonkeyPatch, batch_size_rows: int
) -> None:
    monkeypatch.setattr(PostgresConnector, "nulls_not_distinct", property(lambda _: False))

    def pair(a: int | None, b: str | None, v: str, at: str, **extra: Any) -> dict[str, Any]:
        return record("pairs", {"a": a, "b": b, "v": v, **extra}, at)

    load(
        pg_db,
        PAIRS,
        pair(1, None, "1/null first", T1),
        pair(1, "", "1/empty", T1),
        pair(None, None, "null/null first", T1),
        pair(2, None, "2/null, to delete", T1),
        batch_size_rows=batch_size_rows,
    )
    load(
        pg_db,
        PAIRS,
        pair(1, None, "1/null newer", T2),
        pair(None, None, "null/null older", T0),
        pair(2, None, "gone", T2, _sdc_deleted_at=T2),
        pair(2, None, "older than the delete", T0),
        batch_size_rows=batch_size_rows,
    )
    admin = pg_db.admin()
    rows = admin.execute(
        "SELECT a, b, v FROM tap_data.pairs ORDER BY a NULLS LAST, b NULLS FIRST"
    ).fetchall()
    assert rows == [(1, None, "1/null newer"), (1, "", "1/empty"), (None, None, "null/null first")]
    definition = admin.execute(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = 'tap_data' AND tablename = 'pairs'"
    ).fetchall()
    assert len(definition) == 1
    assert "COALESCE(a, (0)::bigint)" in definition[0][0] or "COALESCE(a, 0" in definition[0][0]
    assert "NULLS NOT DISTINCT" not in definition[0][0]
