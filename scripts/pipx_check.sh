#!/usr/bin/env bash
# The pipx path, checked end to end: build the wheel, `pipx install 'target-postgres-hp[embedded]'`
# into a throwaway PIPX_HOME, run --about, load demo/users.singer into the embedded PostgreSQL and
# check the rows. Exits non-zero on any mismatch; leaves nothing behind.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
started=$SECONDS

work=$(mktemp -d "${TMPDIR:-/tmp}/target-postgres-hp-pipx.XXXXXX")
pgdata="$work/pgdata"
export PIPX_HOME="$work/pipx/home" PIPX_BIN_DIR="$work/pipx/bin" PIPX_MAN_DIR="$work/pipx/man"
export PATH="$PIPX_BIN_DIR:$PATH"

# shellcheck source=scripts/check_common.sh
source scripts/check_common.sh
trap cleanup EXIT

python3 -m venv "$work/tools"
"$work/tools/bin/python" -m pip install --quiet build 'pipx>=1.4'
# Build from a copy so that no build output lands in the repository.
copy_repository "$work/src"
# sdist first, then the wheel from it: what PyPI would ship.
"$work/tools/bin/python" -m build --outdir "$work/dist" "$work/src" > "$work/build.log" ||
    { cat "$work/build.log"; exit 1; }
wheels=("$work"/dist/target_postgres_hp-*.whl)
echo "Built ${wheels[0]##*/}"

"$work/tools/bin/pipx" install --python python3 "${wheels[0]}[embedded]"
if [ "$(command -v target-postgres-hp)" != "$PIPX_BIN_DIR/target-postgres-hp" ]; then
    echo "pipx check FAILED: target-postgres-hp is not the one pipx installed" >&2
    exit 1
fi
target-postgres-hp --version
about=$(target-postgres-hp --about)
sed -n 1,3p <<< "$about"
if ! grep -q '^Name: target-postgres-hp$' <<< "$about"; then
    echo "pipx check FAILED: --about does not name target-postgres-hp" >&2
    exit 1
fi

cd "$work"
printf '{"embedded_data_directory": "%s", "database": "demo", "schema": "demo"}\n' "$pgdata" \
    > config.json
target-postgres-hp --config config.json --input "$repo/demo/users.singer" > state.jsonl
expected_state='{"bookmarks": {"users": {"id": 6}}}'
if [ "$(tail -n 1 state.jsonl)" != "$expected_state" ]; then
    echo "pipx check FAILED: last state $(tail -n 1 state.jsonl), expected $expected_state" >&2
    exit 1
fi

# The installed package, not the repository's, must do the work: run from $work with its python.
"$PIPX_HOME/venvs/target-postgres-hp/bin/python" - "$pgdata" "$PIPX_HOME" <<'PY'
import sys
from decimal import Decimal
from pathlib import Path

import psycopg

import target_postgres_hp
from target_postgres_hp import embedded

problems = []


def expect(what, actual, expected):
    if actual != expected:
        problems.append(f"{what}: expected {expected!r}, got {actual!r}")


expect(
    "package location inside PIPX_HOME",
    Path(target_postgres_hp.__file__).is_relative_to(sys.argv[2]),
    True,
)
server = embedded.start(Path(sys.argv[1]))
with psycopg.connect(host=server.socket_directory, user=embedded.SUPERUSER, dbname="demo") as conn:
    rows = conn.execute(
        "SELECT id, name, email, balance, active, address->>'city' FROM demo.users ORDER BY id"
    ).fetchall()
    (raw_rows,) = conn.execute(
        "SELECT count(*) FROM airbyte_internal.demo_raw__stream_users"
    ).fetchone()
expect("ids in demo.users", [row[0] for row in rows], [1, 2, 3, 4, 5, 6])
expect(
    "user 1",
    rows[0] if rows else None,
    (1, "Ada", "ada@example.com", Decimal("12.51"), True, "Zürich"),
)
expect("rows in the raw table", raw_rows, 6)

if problems:
    print("pipx check FAILED:", *problems, sep="\n  ", file=sys.stderr)
    sys.exit(1)
print(f"demo.users holds {len(rows)} typed rows, the raw table {raw_rows}: as expected.")
PY

echo "pipx check passed in $((SECONDS - started)) s."
