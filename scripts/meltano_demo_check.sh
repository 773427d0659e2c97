#!/usr/bin/env bash
# The newcomer's Meltano path, checked end to end: in a throwaway copy of the repository, install
# Meltano, run `meltano install` and `meltano run tap-jsonl target-postgres-hp` (demo/users.jsonl
# into the embedded PostgreSQL), then check the typed rows. Exits non-zero on any mismatch.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS

work=$(mktemp -d "${TMPDIR:-/tmp}/target-postgres-hp-meltano.XXXXXX")
project="$work/project"
pgdata="$project/.target-postgres-hp/pgdata"

# shellcheck source=scripts/check_common.sh
source scripts/check_common.sh
trap cleanup EXIT

# What a clone holds (tracked and new, unignored files), so uncommitted work is what gets checked.
copy_repository "$project"

python3 -m venv "$work/meltano-venv"
"$work/meltano-venv/bin/python" -m pip install --quiet 'meltano>=4.4,<5'
meltano="$work/meltano-venv/bin/meltano"

cd "$project"
"$meltano" install
"$meltano" run tap-jsonl target-postgres-hp

# The loader's own venv has psycopg and finds the server the run left running.
.meltano/loaders/target-postgres-hp/venv/bin/python - "$pgdata" <<'PY'
import sys
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import psycopg

from target_postgres_hp import embedded

server = embedded.start(Path(sys.argv[1]))
problems = []


def expect(what, actual, expected):
    if actual != expected:
        problems.append(f"{what}: expected {expected!r}, got {actual!r}")


with psycopg.connect(host=server.socket_directory, user=embedded.SUPERUSER, dbname="demo") as conn:
    columns = dict(
        conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = 'public' AND table_name = 'users'"
        ).fetchall()
    )
    expected_types = {
        "id": "bigint",
        "name": "character varying",
        "email": "character varying",
        "balance": "numeric",
        "active": "boolean",
        "signed_up_at": "timestamp with time zone",
        "birthday": "date",
        "address": "jsonb",
        "tags": "jsonb",
    }
    expect(
        "column types of public.users",
        {name: columns.get(name) for name in expected_types},
        expected_types,
    )
    rows = conn.execute(
        "SELECT id, name, email, balance, active, signed_up_at, address, tags, _airbyte_meta"
        " FROM public.users ORDER BY id"
    ).fetchall()
    expect("ids in public.users (one row per key)", [row[0] for row in rows], [1, 2, 3, 4, 5])
    by_id = {row[0]: row for row in rows}
    if 2 in by_id:
        # id 2 appears twice in demo/users.jsonl; the later record wins.
        expect(
            "user 2 after dedup",
            by_id[2][3:8],
            (
                Decimal("99.5"),
                True,
                datetime(2024, 2, 12, 6, 30, tzinfo=timezone.utc),
                {"city": "Arlington", "zip": "22201"},
                ["admin"],
            ),
        )
    if 3 in by_id:
        expect("email of user 3", by_id[3][2], None)
    expect("typing changes", [row[8]["changes"] for row in rows], [[]] * len(rows))
    (raw_rows,) = conn.execute(
        "SELECT count(*) FROM airbyte_internal.public_raw__stream_users"
    ).fetchone()
    expect("rows in the raw table", raw_rows, 6)

if problems:
    print("meltano demo check FAILED:", *problems, sep="\n  ", file=sys.stderr)
    sys.exit(1)
print(f"public.users holds {len(rows)} typed rows, the raw table {raw_rows}: as expected.")
PY

echo "Meltano demo check passed in $((SECONDS - started)) s."
