"""Print what the demo loaded, and how to connect to the embedded server."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import psycopg

from target_postgres_hp import embedded

config = json.loads(Path(sys.argv[1]).read_text())
server = embedded.start(Path(config["embedded_data_directory"]))
database = config.get("database", embedded.SUPERUSER)
with psycopg.connect(host=server.socket_directory, user=embedded.SUPERUSER, dbname=database) as conn:
    raw_count = conn.execute("SELECT count(*) FROM airbyte_internal.demo_raw__stream_users")
    raw_rows = raw_count.fetchone()
    columns = conn.execute(
        "SELECT column_name, data_type FROM information_schema.columns"
        " WHERE table_schema = 'demo' AND table_name = 'users' AND column_name NOT LIKE '\\_%'"
        " ORDER BY ordinal_position"
    ).fetchall()
    names = ", ".join(f'"{name}"' for name, _ in columns)
    rows = conn.execute(f"SELECT {names} FROM demo.users ORDER BY 1").fetchall()  # noqa: S608
print(f"airbyte_internal.demo_raw__stream_users holds {raw_rows[0] if raw_rows else 0} raw rows.")
print(f"demo.users holds {len(rows)} typed rows:")
print("  ", " | ".join(f"{name} ({kind})" for name, kind in columns))
for row in rows:
    print("  ", " | ".join(str(value) for value in row))
print(embedded.describe(server, database))
