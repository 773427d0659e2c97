"""SPEC §8: a dependent object the loading role may not drop even with CASCADE (another role owns
it, in a schema the loading role does not own) stops the run before anything changes, naming the
object, its owner and the fix: its owner drops it, or the loading role becomes a member of the
owner role. Checked from the catalog before any change, in both layouts, for a stream appended
with dedup and one fully refreshed (overwrite), the step being the widening of a column."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from servers import PgDatabase

from .targetrun import messages, record, run_target, schema_message

pytestmark = pytest.mark.integration

BEFORE = schema_message("t", {"id": {"type": "integer"}, "amount": {"type": "integer"}}, ["id"])
AFTER = schema_message("t", {"id": {"type": "integer"}, "amount": {"type": "number"}}, ["id"])
VIEW = "SELECT id, amount FROM e.t"


@pytest.fixture
def owner(pg_db: PgDatabase) -> Iterator[str]:
    """A role that is not the loader's, and a schema `e` the loader may create tables in but
    does not own (so it may not drop other roles' objects in it)."""
    name = f"owner_{secrets.token_hex(4)}"
    conn = pg_db.admin()
    conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(name)))
    conn.execute("CREATE SCHEMA e")
    for role in (pg_db.role.name, name):
        conn.execute(sql.SQL("GRANT USAGE, CREATE ON SCHEMA e TO {}").format(sql.Identifier(role)))
    try:
        yield name
    finally:
        conn.execute("DROP SCHEMA e CASCADE")
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def state(n: int) -> dict[str, Any]:
    return {"type": "STATE", "value": {"n": n}}


def table_state(conn: psycopg.Connection[Any]) -> tuple[Any, ...]:
    """The column type of `amount`, the rows, and the view (definition, owner)."""
    column = conn.execute(
        "SELECT data_type FROM information_schema.columns"
        " WHERE table_schema = 'e' AND table_name = 't' AND column_name = 'amount'"
    ).fetchone()
    rows = conn.execute("SELECT id, amount FROM e.t ORDER BY id").fetchall()
    view = conn.execute(
        "SELECT pg_get_viewdef(c.oid), pg_get_userbyid(c.relowner) FROM pg_class AS c"
        " WHERE c.oid = to_regclass('e.vw')"
    ).fetchone()
    return column, rows, view


@pytest.mark.parametrize("layout", ["raw_and_final", "direct"])
@pytest.mark.parametrize("method", ["append-dedup", "overwrite"])
def test_a_dependent_of_another_owner_names_its_owner_and_the_fix(
    pg_db: PgDatabase, tmp_path: Path, owner: str, layout: str, method: str
) -> None:
    config = pg_db.config(schema="e", table_layout=layout, load_method=method)
    first = messages(BEFORE, record("t", {"id": 1, "amount": 5}), state(1))
    run = run_target(config, first, tmp_path / "first")
    assert run.returncode == 0, run.stderr[-3000:]
    conn = pg_db.admin()
    conn.execute(f"CREATE VIEW e.vw AS {VIEW}")
    conn.execute(sql.SQL("ALTER VIEW e.vw OWNER TO {}").format(sql.Identifier(owner)))
    before = table_state(conn)
    assert before[0] == ("bigint",)
    assert before[2] is not None
    assert before[2][1] == owner

    widening = messages(
        AFTER, '{"type": "RECORD", "stream": "t", "record": {"id": 2, "amount": 2.5}}', state(2)
    )
    loader = pg_db.role.name
    expected = (
        "The target must change the type of e.t column amount to DECIMAL, but view e.vw"
        f" (owned by {owner}) depends on it and role {loader} may not drop it, not even with"
        f" drop_cascade. Nothing was changed: its owner {owner} must drop it, or make {loader}"
        f' a member of {owner} (GRANT "{owner}" TO "{loader}").'
    )
    for cascade in (True, False):
        run = run_target({**config, "drop_cascade": cascade}, widening, tmp_path / f"c{cascade}")
        assert run.returncode == 1, run.stderr[-3000:]
        assert "Traceback" not in run.stderr
        assert run.error_lines() == [expected], run.stderr[-3000:]
        assert run.stdout == ""
        assert table_state(conn) == before

    # The fix the message names: with the loader a member of the owner role, the view is set
    # aside and recreated around the change, and keeps its owner.
    conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(owner), sql.Identifier(loader)))
    run = run_target(config, widening, tmp_path / "fixed")
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.splitlines() == ['{"n": 2}']
    column, rows, view = table_state(conn)
    assert column == ("numeric",)
    expected_rows = (
        [(2, Decimal("2.5"))] if method == "overwrite" else [(1, 5), (2, Decimal("2.5"))]
    )
    assert rows == expected_rows
    assert view is not None
    assert view[1] == owner
