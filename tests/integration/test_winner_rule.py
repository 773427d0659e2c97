"""SPEC §6.3's winner rule, as `winner.py` writes it, checked in PostgreSQL against a Python model
of the rule: the ORDER BY form (which row of a set wins) and the predicate form (does a later row
beat an earlier one) agree with the model and so with each other, for random sets of rows of one
key. Table versions take part only between rows that both carry one (the rule's first
criterion); sets that mix versioned and unversioned rows are checked for the documented choice
of the ORDER BY form: a versioned row first."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, NamedTuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql
from servers import PgDatabase

from target_postgres_hp import winner

pytestmark = pytest.mark.integration

BASE = datetime(2024, 1, 1, tzinfo=timezone.utc)


class Row(NamedTuple):
    generation: int
    cursor: int | None
    minute: int

    @property
    def extracted_at(self) -> datetime:
        return BASE + timedelta(minutes=self.minute)


def model_beats(new: Row, old: Row, *, with_cursor: bool) -> bool:
    """SPEC §6.3 as read: `new` arrived after `old`."""
    if new.generation and old.generation and new.generation != old.generation:
        return new.generation > old.generation
    if with_cursor and new.cursor != old.cursor:
        if new.cursor is None or old.cursor is None:
            return new.cursor is not None
        return new.cursor > old.cursor
    if new.minute != old.minute:
        return new.minute > old.minute
    return True


ROWS = st.lists(
    st.builds(
        Row,
        generation=st.sampled_from([0, 0, 1, 2, 3]),
        cursor=st.one_of(st.none(), st.integers(1, 3)),
        minute=st.integers(0, 2),
    ),
    min_size=1,
    max_size=6,
)


@pytest.mark.parametrize("with_cursor", [True, False], ids=["cursor", "no-cursor"])
def test_both_forms_follow_the_rule(pg_db: PgDatabase, with_cursor: bool) -> None:
    conn = pg_db.admin()
    conn.execute(
        "CREATE TABLE rows (k int, _airbyte_generation_id bigint, cur int,"
        " _airbyte_extracted_at timestamptz, _airbyte_raw_id text)"
    )
    cursor = "cur" if with_cursor else None
    ranked = sql.SQL("SELECT DISTINCT ON (k) _airbyte_raw_id FROM rows ORDER BY {}").format(
        winner.order_by(["k"], cursor)
    )
    pairwise = sql.SQL(
        "SELECT new._airbyte_raw_id, old._airbyte_raw_id, {} FROM rows AS new, rows AS old"
        " WHERE new._airbyte_raw_id > old._airbyte_raw_id"
    ).format(winner.beats(sql.Identifier("new"), sql.Identifier("old"), cursor))

    @settings(
        max_examples=200,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(rows=ROWS)
    def check(rows: list[Row]) -> None:
        conn.execute("TRUNCATE rows")
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO rows VALUES (1, %s, %s, %s, %s)",
                [
                    (row.generation, row.cursor, row.extracted_at, f"{arrival:04d}")
                    for arrival, row in enumerate(rows)
                ],
            )
        by_id = {f"{arrival:04d}": row for arrival, row in enumerate(rows)}
        decided: dict[tuple[str, str], Any] = {}
        for new_id, old_id, wins in conn.execute(pairwise):
            assert wins is not None, "the predicate is never NULL"
            expected = model_beats(by_id[new_id], by_id[old_id], with_cursor=with_cursor)
            assert wins == expected, (by_id[new_id], by_id[old_id])
            decided[(new_id, old_id)] = wins
        row = conn.execute(ranked).fetchone()
        assert row is not None
        first = row[0]
        versioned = {bool(r.generation) for r in rows}
        if len(versioned) == 1:
            # A set the rule orders completely: the first row beats every other one.
            for other in by_id:
                if other < first:
                    assert decided[(first, other)], (by_id[first], by_id[other])
                elif other > first:
                    assert not decided[(other, first)], (by_id[first], by_id[other])
        else:
            assert by_id[first].generation == max(r.generation for r in rows)

    check()
