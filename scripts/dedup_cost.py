"""Measure what one deduplicating batch costs as the final table grows (SPEC §6.3, §10).

For each table size, the script creates a keyed stream's tables with the target, fills the
final table with that many rows in SQL, then runs the target on a batch of BATCH records
(half updates of existing keys spread over the whole table, half new keys) with
`batch_size_rows` = BATCH, and reads the SDK's `batch_processing_time` metric for it. The
cost must not grow with the table.

    python scripts/dedup_cost.py --dsn postgresql://postgres:postgres@127.0.0.1:55432/postgres \
        --target /path/to/target-postgres-hp --sizes 100000 5000000 --repeat 3 [--layout direct]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg import sql

STREAM = "items"
SCHEMA = "dedup_cost"
BATCH = 100_000
PROPERTIES = {
    "id": {"type": "integer"},
    "updated": {"type": "integer"},
    "name": {"type": "string"},
    "amount": {"type": "number"},
}
METRIC = re.compile(r'METRIC: (\{.*"batch_processing_time".*\})')


def _schema_line() -> str:
    return json.dumps(
        {
            "type": "SCHEMA",
            "stream": STREAM,
            "schema": {"type": "object", "properties": PROPERTIES},
            "key_properties": ["id"],
            "bookmark_properties": ["updated"],
        }
    )


def _record(key: int, updated: int) -> str:
    record = {"id": key, "updated": updated, "name": f"item {key}", "amount": key / 100}
    return json.dumps({"type": "RECORD", "stream": STREAM, "record": record})


def _run(target: str, config: dict[str, object], lines: list[str]) -> tuple[list[float], float]:
    """Run the target; return the processing time of each batch and the whole run's, in
    seconds."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as workdir:
        config_path = Path(workdir) / "config.json"
        config_path.write_text(json.dumps(config))
        done = subprocess.run(
            [target, "--config", str(config_path)],
            input="\n".join(lines) + "\n",
            capture_output=True,
            text=True,
            check=False,
        )
    if done.returncode:
        raise SystemExit(done.stderr[-2000:])
    batches = [json.loads(found)["value"] for found in METRIC.findall(done.stderr)]
    return batches, time.perf_counter() - started


def measure(
    dsn: str, target: str, size: int, repeat: int, layout: str = "raw_and_final"
) -> tuple[list[float], list[float]]:
    """Seconds per BATCH-record dedup batch into a final table of `size` rows: the batch's
    commit (staging, winners, upsert) and the whole run (decoding and streaming included)."""
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    config = {
        "host": info.get("host", "127.0.0.1"),
        "port": int(info.get("port", 5432)),
        "username": info.get("user", "postgres"),
        "password": info.get("password", ""),
        "database": info.get("dbname", "postgres"),
        "schema": SCHEMA,
        "ssl_mode": {"mode": "disable"},
        "batch_size_rows": BATCH,
        "table_layout": layout,
    }
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(SCHEMA)))
        conn.execute("DROP SCHEMA IF EXISTS airbyte_internal CASCADE")
    _run(target, config, [_schema_line(), _record(0, 0)])
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL(
                "INSERT INTO {} (id, updated, name, amount, _airbyte_raw_id,"
                " _airbyte_extracted_at, _airbyte_meta, _airbyte_generation_id)"
                " SELECT g, 1, 'item ' || g, g / 100.0, gen_random_uuid()::text, now(),"
                " '{{\"changes\": []}}', 0 FROM generate_series(1, %s) AS g"
            ).format(sql.Identifier(SCHEMA, STREAM)),
            (size,),
        )
        conn.execute(sql.SQL("VACUUM ANALYZE {}").format(sql.Identifier(SCHEMA, STREAM)))
    timings: list[float] = []
    walls: list[float] = []
    rng = random.Random(size)  # noqa: S311 - picks keys to update, nothing secret
    next_new = size + 1
    for attempt in range(repeat):
        updates = rng.sample(range(1, size + 1), BATCH // 2)
        news = range(next_new, next_new + BATCH // 2)
        next_new += BATCH // 2
        keys = [*updates, *news]
        rng.shuffle(keys)
        lines = [_schema_line(), *(_record(key, 2 + attempt) for key in keys)]
        batches, wall = _run(target, config, lines)
        timings += batches
        walls.append(wall)
    return timings, walls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--target", default="target-postgres-hp")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 5_000_000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--layout", default="raw_and_final", choices=["raw_and_final", "direct", "raw_only"]
    )
    args = parser.parse_args()
    for size in args.sizes:
        timings, walls = measure(args.dsn, args.target, size, args.repeat, args.layout)
        print(
            f"table {size:>10,} rows: {BATCH:,}-record batch commit"
            f" median {statistics.median(timings):.2f} s ({_listed(timings)}),"
            f" whole run median {statistics.median(walls):.2f} s ({_listed(walls)})",
            flush=True,
        )


def _listed(values: list[float]) -> str:
    return ", ".join(f"{value:.2f}" for value in values)


if __name__ == "__main__":
    main()
