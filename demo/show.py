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
    rows = conn.execute(
        "SELECT _airbyte_data->>'id', _airbyte_data->>'name', _airbyte_extracted_at"
        " FROM airbyte_internal.demo_raw__stream_users ORDER BY _airbyte_raw_id"
    ).fetchall()
print(f"airbyte_internal.demo_raw__stream_users holds {len(rows)} rows:")
for row in rows:
    print("  ", *row)
print(embedded.describe(server, database))
