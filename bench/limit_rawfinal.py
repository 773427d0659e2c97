"""The lean limit for our table layout: the least a Python loader must do to write every record
into a raw table and a typed final table. The runner divides every tool's records/s by this.

    python bench/limit_rawfinal.py --dsn DSN [--schema tap_bench] [--batch 20000] < stream

Per SCHEMA message it creates (if missing)
  * the raw table airbyte_internal.<stream>: _airbyte_raw_id varchar primary key,
    _airbyte_extracted_at timestamptz, _airbyte_loaded_at timestamptz, _airbyte_data jsonb,
    _airbyte_meta jsonb, _airbyte_generation_id bigint, and one partial index on
    _airbyte_loaded_at for the rows not yet typed (WHERE _airbyte_loaded_at IS NULL);
  * the typed table <schema>.<stream>: one column per property (integer -> bigint,
    number -> numeric, boolean -> boolean, date-time -> timestamptz, date -> date,
    object/array -> jsonb, anything else -> varchar), the primary key from key_properties,
    then _airbyte_raw_id, _airbyte_extracted_at, _airbyte_meta and _airbyte_generation_id.

Per RECORD (decoded with orjson) it streams one row into each table through psycopg 3
`copy.write_row()`, on two connections whose COPYs stay open for a batch of --batch records, so
decoding here overlaps parsing in the two server backends. The id is time-ordered (a UUID
string with a 48-bit millisecond timestamp, version 7 and a counter), so raw rows arrive in
primary-key order. After each batch both connections commit, then the latest STATE is echoed.

Nothing else: no validation, no type checks, no deduplication, no NUL handling.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
import psycopg

RAW_SCHEMA = "airbyte_internal"
META = '{"changes":[],"sync_id":1}'
GENERATION_ID = 0


def ident(name: str) -> str:
    """Quote a PostgreSQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def pg_type(prop: dict[str, Any]) -> str:
    """The column type of one JSON schema property."""
    types = prop.get("type", "string")
    types = [types] if isinstance(types, str) else [t for t in types if t != "null"]
    kind = types[0] if len(types) == 1 else "string"
    if kind == "integer":
        return "bigint"
    if kind == "number":
        return "numeric"
    if kind == "boolean":
        return "boolean"
    if kind in ("object", "array"):
        return "jsonb"
    return {"date-time": "timestamptz", "date": "date"}.get(prop.get("format", ""), "varchar")


def final_table_ddl(schema: str, stream: str, props: dict[str, Any], keys: list[str]) -> str:
    """CREATE TABLE for the typed final table of a stream."""
    cols = [f"{ident(name)} {pg_type(prop)}" for name, prop in props.items()]
    cols += [
        "_airbyte_raw_id varchar not null",
        "_airbyte_extracted_at timestamptz not null",
        "_airbyte_meta jsonb not null",
        "_airbyte_generation_id bigint",
    ]
    if keys:
        cols.append(f"primary key ({', '.join(ident(k) for k in keys)})")
    return f"create table if not exists {ident(schema)}.{ident(stream)} ({', '.join(cols)})"


def raw_table_ddl(stream: str) -> list[str]:
    """CREATE TABLE and CREATE INDEX for the raw table of a stream."""
    table = f"{ident(RAW_SCHEMA)}.{ident(stream)}"
    return [
        f"create table if not exists {table} (_airbyte_raw_id varchar primary key, "
        "_airbyte_extracted_at timestamptz, _airbyte_loaded_at timestamptz, "
        "_airbyte_data jsonb, _airbyte_meta jsonb, _airbyte_generation_id bigint)",
        f"create index if not exists {ident(stream + '_untyped')} on {table} "
        "(_airbyte_loaded_at) where _airbyte_loaded_at is null",
    ]


class TimeOrderedIds:
    """UUID strings: 48-bit ms timestamp at start, version 7, variant bits, then a counter."""

    def __init__(self) -> None:
        """Fix the timestamp part once; the counter makes every id unique and increasing."""
        millis = time.time_ns() // 1_000_000
        self.base = (millis << 80) | (0x7 << 76) | (0b10 << 62)
        self.counter = 0

    def next(self) -> str:
        """The next id."""
        self.counter += 1
        return str(uuid.UUID(int=self.base | self.counter))


@dataclass
class Stream:
    """What the loader knows about one stream: its columns and its two COPY targets."""

    columns: list[str]
    json_positions: list[int]  # columns whose values are re-encoded as JSON text
    raw_conn: psycopg.Connection[Any]
    final_conn: psycopg.Connection[Any]
    raw_copy: str
    final_copy: str


class Loader:
    """Reads Singer messages and streams RECORDs into the raw and final tables in batches."""

    def __init__(self, dsn: str, schema: str, batch: int) -> None:
        """Connect the admin connection that runs the DDL."""
        self.dsn, self.schema, self.batch = dsn, schema, batch
        self.admin = psycopg.connect(dsn, autocommit=True)
        self.streams: dict[str, Stream] = {}
        self.copies = contextlib.ExitStack()  # the COPYs open in the current batch
        self.open: dict[tuple[str, str], psycopg.Copy] = {}
        self.pending = 0
        self.state: Any = None
        self.ids = TimeOrderedIds()
        self.loaded_at = datetime.datetime.now(datetime.timezone.utc).isoformat()

    def add_stream(self, msg: dict[str, Any]) -> None:
        """Create the stream's tables and open its two connections (first SCHEMA only)."""
        self.flush()  # no DDL while COPYs are open
        name, props, keys = msg["stream"], msg["schema"]["properties"], msg.get("key_properties")
        self.admin.execute(f"create schema if not exists {ident(self.schema)}")
        self.admin.execute(f"create schema if not exists {ident(RAW_SCHEMA)}")
        self.admin.execute(final_table_ddl(self.schema, name, props, keys or []))
        for statement in raw_table_ddl(name):
            self.admin.execute(statement)
        old = self.streams.get(name)
        self.streams[name] = Stream(
            columns=list(props),
            json_positions=[j for j, p in enumerate(props.values()) if pg_type(p) == "jsonb"],
            raw_conn=old.raw_conn if old else psycopg.connect(self.dsn),
            final_conn=old.final_conn if old else psycopg.connect(self.dsn),
            raw_copy=f"copy {ident(RAW_SCHEMA)}.{ident(name)} from stdin",
            final_copy=f"copy {ident(self.schema)}.{ident(name)} from stdin",
        )

    def copy(self, name: str, kind: str) -> psycopg.Copy:
        """The open COPY of a stream's raw or final table, started on first use in a batch."""
        key = (name, kind)
        if key not in self.open:
            stream = self.streams[name]
            conn = stream.raw_conn if kind == "raw" else stream.final_conn
            statement = stream.raw_copy if kind == "raw" else stream.final_copy
            self.open[key] = self.copies.enter_context(conn.cursor().copy(statement))
        return self.open[key]

    def flush(self) -> None:
        """End the open COPYs, commit both connections of every stream, then echo STATE."""
        self.copies.close()
        self.open.clear()
        for stream in self.streams.values():
            stream.raw_conn.commit()
            stream.final_conn.commit()
        if self.state is not None:  # only once the data it covers is committed
            sys.stdout.write(orjson.dumps(self.state).decode() + "\n")
            sys.stdout.flush()
        self.pending, self.state = 0, None

    def run(self, lines: Any) -> None:
        """Load every message; the RECORD path is inlined, as it runs once per record."""
        dumps, loaded_at = orjson.dumps, self.loaded_at
        for line in lines:
            msg = orjson.loads(line)
            kind = msg["type"]
            if kind == "RECORD":
                name, record = msg["stream"], msg["record"]
                stream = self.streams[name]
                raw_id = self.ids.next()
                extracted_at = msg.get("time_extracted") or loaded_at
                raw = [raw_id, extracted_at, loaded_at, dumps(record).decode(), META, GENERATION_ID]
                self.copy(name, "raw").write_row(raw)
                row = [record.get(c) for c in stream.columns]
                for j in stream.json_positions:
                    if row[j] is not None:
                        row[j] = dumps(row[j]).decode()
                row += [raw_id, extracted_at, META, GENERATION_ID]
                self.copy(name, "final").write_row(row)
                self.pending += 1
                if self.pending >= self.batch:
                    self.flush()
            elif kind == "STATE":
                self.state = msg["value"]
            elif kind == "SCHEMA":
                self.add_stream(msg)
        self.flush()

    def close(self) -> None:
        """Close every connection."""
        for stream in self.streams.values():
            stream.raw_conn.close()
            stream.final_conn.close()
        self.admin.close()


def main() -> None:
    """Parse the arguments and load stdin."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", required=True, help="libpq connection string of the target db")
    parser.add_argument("--schema", default="tap_bench", help="schema of the typed tables")
    parser.add_argument("--batch", type=int, default=20_000, help="records per commit")
    args = parser.parse_args()
    loader = Loader(args.dsn, args.schema, args.batch)
    try:
        loader.run(sys.stdin.buffer)
    finally:
        loader.close()


if __name__ == "__main__":
    main()
