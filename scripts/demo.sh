#!/usr/bin/env bash
# Install the target with the embedded PostgreSQL into .venv and load demo/users.singer into it:
# a Singer stream in, tables in a local PostgreSQL out, nothing to set up.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[embedded]'

.venv/bin/target-postgres-hp --config demo/config.json --input demo/users.singer > demo-state.jsonl
echo "Last state emitted: $(tail -n 1 demo-state.jsonl)"
.venv/bin/python demo/show.py demo/config.json
