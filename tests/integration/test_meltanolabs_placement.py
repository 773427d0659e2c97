"""README migration claim, checked against the peer itself: a MeltanoLabs target-postgres config
with `default_target_schema` puts this target's final tables where MeltanoLabs target-postgres
0.8.1 puts its tables, with the same rows (SPEC §2, §6.4).

Both loaders read the same tap-postgres-style input (`public-users`, `public-orders`,
`sales-customers`, and a stream without namespace) with the same MeltanoLabs-named config
(`user`, `default_target_schema`, `load_method: upsert`), each into a database of its own.
The peer runs from its own virtualenv, named by TARGET_POSTGRES_HP_MELTANOLABS_BIN
(scripts/test.sh installs it); without it the test is skipped, which fails CI.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from servers import PgDatabase, PostgresServer

from .targetrun import messages, run_target, schema_message, tables_in

pytestmark = pytest.mark.integration

PEER = os.environ.get("TARGET_POSTGRES_HP_MELTANOLABS_BIN")
SCHEMA = "analytics"

PROPERTIES: dict[str, Any] = {
    "id": {"type": "integer"},
    "name": {"type": ["string", "null"]},
    "updated_at": {"type": ["string", "null"], "format": "date-time"},
}
STREAMS = {
    "public-users": "users",
    "public-orders": "orders",
    "sales-customers": "customers",
    "events": "events",
}


def tap_postgres_input() -> str:
    """Each stream: SCHEMA with key id, three records of which two share a key, a STATE."""
    lines: list[Any] = []
    for number, stream in enumerate(STREAMS):
        lines.append(schema_message(stream, PROPERTIES, ["id"]))
        for record_id, name in ((1, "first"), (2, "second"), (1, "first, updated")):
            lines.append(
                {
                    "type": "RECORD",
                    "stream": stream,
                    "record": {
                        "id": record_id,
                        "name": f"{stream} {name}",
                        "updated_at": f"2024-05-0{number + 1}T10:00:00+00:00",
                    },
                    "time_extracted": "2024-05-01T10:00:00+00:00",
                }
            )
        lines.append({"type": "STATE", "value": {"bookmarks": {stream: {"n": 3}}}})
    return messages(*lines)


def meltanolabs_config(db: PgDatabase) -> dict[str, Any]:
    """What a MeltanoLabs user has: its setting names, default_target_schema set."""
    return {
        "host": db.server.host,
        "port": db.server.port,
        "user": db.role.name,
        "password": db.role.password,
        "database": db.dbname,
        "default_target_schema": SCHEMA,
        "load_method": "upsert",
        # MeltanoLabs' default; here it must be said, TLS being required by default (README).
        "ssl_enable": False,
    }


def user_tables(conn: psycopg.Connection[Any]) -> dict[tuple[str, str], int]:
    """Every table outside the system and raw schemas, with its row count."""
    found = conn.execute(
        "SELECT n.nspname, c.relname FROM pg_class AS c"
        " JOIN pg_namespace AS n ON n.oid = c.relnamespace"
        " WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN"
        " ('pg_catalog', 'information_schema', 'airbyte_internal')"
        " AND n.nspname NOT LIKE 'pg_%'"
    ).fetchall()
    counts = {}
    for schema, table in found:
        row = conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, table))
        ).fetchone()
        assert row is not None
        counts[(schema, table)] = int(row[0])
    return counts


@pytest.fixture
def peer_db(pg16: PostgresServer) -> Iterator[PgDatabase]:
    with PgDatabase.fresh(pg16) as db:
        yield db


def test_default_target_schema_places_tables_like_meltanolabs(
    pg_db: PgDatabase, peer_db: PgDatabase, tmp_path: Path
) -> None:
    if not PEER:
        pytest.skip("TARGET_POSTGRES_HP_MELTANOLABS_BIN is not set (scripts/test.sh sets it)")
    stdin = tap_postgres_input()
    config_path = tmp_path / "peer.json"
    config_path.write_text(json.dumps(meltanolabs_config(peer_db)))
    peer = subprocess.run(
        [PEER, "--config", str(config_path)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        cwd=tmp_path,
    )
    assert peer.returncode == 0, peer.stderr[-3000:]
    ours = run_target(meltanolabs_config(pg_db), stdin, tmp_path / "ours")
    assert ours.returncode == 0, ours.stderr

    peer_tables = user_tables(peer_db.admin())
    our_tables = user_tables(pg_db.admin())
    expected = {(SCHEMA, table): 2 for table in STREAMS.values()}
    assert peer_tables == expected, "MeltanoLabs itself no longer places tables as assumed"
    assert our_tables == peer_tables
    admin = pg_db.admin()
    assert tables_in(admin, "public") == []
    assert tables_in(admin, "sales") == []
    peer_admin = peer_db.admin()
    for table in STREAMS.values():
        query = sql.SQL("SELECT id, name FROM {} ORDER BY id").format(sql.Identifier(SCHEMA, table))
        assert admin.execute(query).fetchall() == peer_admin.execute(query).fetchall(), table
