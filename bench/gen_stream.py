# Word lists read best as one string split on spaces:
# ruff: noqa: SIM905
"""Write a deterministic Singer stream (JSON lines) to stdout for the benchmarks.

    python bench/gen_stream.py N --variant basic|wide [--state-every 10000] > stream.jsonl

The same N and variant always give byte-identical output, on any machine and Python version:
values come from a SplitMix64 hash of (record number, field number), not from a clock or the
`random` module. Record i is the same whatever N is.

basic  stream `users`, key `id`, 12 properties: id, name, email, amount (2 decimals), count,
       flag, updated_at (date-time with a UTC offset), birth_date, address (object with a
       nested geo object), tags (array of strings), nickname (30 % null) and bio (200
       characters with non-ASCII letters, double quotes and a TAB). About 640 bytes a line.
wide   stream `wide_events`, key `id`, 60 properties: id plus 14 strings, 15 integers,
       10 numbers, 8 booleans, 6 date-times and 6 nullable strings. About 1.2 kB a line.

Every RECORD carries `time_extracted`. A STATE message follows every --state-every records
and the last record.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from typing import Any

MASK = (1 << 64) - 1
TIME_EXTRACTED = "2026-01-01T00:00:00+00:00"

FIRST_NAMES = "Amélie Bruno Chidi Dana Eitan Fatima Gustav Hana Íñigo Jonas Keiko Luis".split()
LAST_NAMES = "Almeida Bauer Cruz D'Souza Eriksen Fischer Gómez Huang Ibrahim Jansen Łukasik".split()
CITIES = "Porto Zürich Gdańsk Nagoya Accra Québec Denver Cork".split()
TAGS = "new vip beta trial churn-risk mobile newsletter partner".split()
WORDS = (  # 32 words, so 5 bits of hash pick one
    "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november "
    "oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu crème brûlée "
    "façade jalapeño über smörgåsbord"
).split()
SPECIAL = 'a "quoted" phrase,\ta tab and ünïcödé'  # the characters COPY and JSON must escape
OFFSETS = ["+00:00", "+01:00", "-04:00", "+05:30", "-07:00", "+09:00", "+12:45", "-03:30"]


def hash64(i: int, field: int) -> int:
    """SplitMix64 finaliser applied to (i, field): a stable, well-mixed 64-bit value."""
    z = (i * 0x9E3779B97F4A7C15 + (field + 1) * 0xD1B54A32D192ED03) & MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def date_time(h: int) -> str:
    """An RFC 3339 date-time with microseconds and a UTC offset, drawn from the bits of h."""
    year, month, day = 2020 + h % 6, 1 + (h >> 3) % 12, 1 + (h >> 7) % 28
    hour, minute, second = (h >> 12) % 24, (h >> 17) % 60, (h >> 23) % 60
    micro, offset = (h >> 29) % 1_000_000, OFFSETS[(h >> 49) % len(OFFSETS)]
    return f"{year}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}.{micro:06d}{offset}"


def bio(i: int, length: int = 200) -> str:
    """About `length` characters of words (5 bits of hash per word) with SPECIAL inside."""
    words: list[str] = []
    draw = 0
    while sum(len(w) + 1 for w in words) < length:
        h = hash64(i, 100 + draw)
        words.extend(WORDS[(h >> shift) & 31] for shift in range(0, 60, 5))
        draw += 1
    words.insert(1 + hash64(i, 99) % 4, SPECIAL)
    return " ".join(words)[:length]


def nullable(t: str) -> dict[str, Any]:
    """JSON schema of a nullable scalar of type t."""
    return {"type": ["null", t]}


USERS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "name": nullable("string"),
        "email": nullable("string"),
        "amount": nullable("number"),
        "count": nullable("integer"),
        "flag": nullable("boolean"),
        "updated_at": {"type": ["null", "string"], "format": "date-time"},
        "birth_date": {"type": ["null", "string"], "format": "date"},
        "address": {
            "type": ["null", "object"],
            "properties": {
                "street": nullable("string"),
                "city": nullable("string"),
                "zip": nullable("string"),
                "geo": {
                    "type": ["null", "object"],
                    "properties": {"lat": nullable("number"), "lon": nullable("number")},
                },
            },
        },
        "tags": {"type": ["null", "array"], "items": {"type": "string"}},
        "nickname": nullable("string"),
        "bio": nullable("string"),
    },
}


def user(i: int) -> dict[str, Any]:
    """Record i of the `users` stream."""
    h = hash64(i, 0)
    first, last = FIRST_NAMES[h % len(FIRST_NAMES)], LAST_NAMES[(h >> 4) % len(LAST_NAMES)]
    g = hash64(i, 1)
    return {
        "id": i,
        "name": f"{first} {last}",
        "email": f"{first.lower()}.{i}@example.com",
        "amount": ((h >> 8) % 10_000_000 - 2_000_000) / 100,
        "count": (h >> 32) % 100_000,
        "flag": bool(h >> 63),
        "updated_at": date_time(hash64(i, 2)),
        "birth_date": f"19{50 + g % 50}-{1 + (g >> 6) % 12:02d}-{1 + (g >> 10) % 28:02d}",
        "address": {
            "street": f"{1 + (g >> 15) % 999} {LAST_NAMES[(g >> 25) % len(LAST_NAMES)]} Road",
            "city": CITIES[(g >> 29) % len(CITIES)],
            "zip": f"{(g >> 32) % 100_000:05d}",
            "geo": {
                "lat": round(((g >> 20) % 18_000_000) / 100_000 - 90, 5),
                "lon": round(((g >> 40) % 36_000_000) / 100_000 - 180, 5),
            },
        },
        "tags": [TAGS[(h >> (40 + 3 * k)) % len(TAGS)] for k in range((h >> 36) % 4)],
        "nickname": None if (h >> 52) % 10 < 3 else f"{first[:3].lower()}_{(h >> 20) % 1000}",
        "bio": bio(i),
    }


# wide: id + 14 strings + 15 integers + 10 numbers + 8 booleans + 6 date-times + 6 nullable
# strings; columns are named kind_NN (s_01 ... z_59).
WIDE_KINDS = "s" * 14 + "i" * 15 + "n" * 10 + "b" * 8 + "t" * 6 + "z" * 6
WIDE_COLUMNS = [(f"{kind}_{j:02d}", kind) for j, kind in enumerate(WIDE_KINDS, 1)]
WIDE_TYPES = {
    "s": nullable("string"),
    "i": nullable("integer"),
    "n": nullable("number"),
    "b": nullable("boolean"),
    "t": {"type": ["null", "string"], "format": "date-time"},
    "z": nullable("string"),
}
WIDE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"id": {"type": "integer"}}
    | {name: WIDE_TYPES[kind] for name, kind in WIDE_COLUMNS},
}


def wide_value(kind: str, h: int) -> Any:
    """One value of a wide column of the given kind, drawn from the bits of h."""
    if kind == "s":
        return f"{WORDS[h & 31]}-{(h >> 5) % 100_000}"
    if kind == "i":
        return (h >> 5) % 1_000_000 - 500_000
    if kind == "n":
        return ((h >> 5) % 10_000_000) / 1000
    if kind == "b":
        return bool(h & 1)
    if kind == "t":
        return date_time(h)
    return None if h & 1 else f"z{(h >> 1) % 1000}"


def wide_event(i: int) -> dict[str, Any]:
    """Record i of the `wide_events` stream."""
    record: dict[str, Any] = {"id": i}
    for j, (name, kind) in enumerate(WIDE_COLUMNS, 1):
        record[name] = wide_value(kind, hash64(i, j))
    return record


VARIANTS: dict[str, tuple[str, dict[str, Any], Callable[[int], dict[str, Any]]]] = {
    "basic": ("users", USERS_SCHEMA, user),
    "wide": ("wide_events", WIDE_SCHEMA, wide_event),
}


def messages(n: int, variant: str, state_every: int) -> Iterator[dict[str, Any]]:
    """The SCHEMA message, n RECORD messages (ids 1..n) and the STATE messages between them."""
    stream, schema, make = VARIANTS[variant]
    yield {"type": "SCHEMA", "stream": stream, "schema": schema, "key_properties": ["id"]}
    for i in range(1, n + 1):
        yield {
            "type": "RECORD",
            "stream": stream,
            "record": make(i),
            "time_extracted": TIME_EXTRACTED,
        }
        if i % state_every == 0 or i == n:
            bookmark = {"replication_key": "id", "replication_key_value": i}
            yield {"type": "STATE", "value": {"bookmarks": {stream: bookmark}}}


def main() -> None:
    """Parse the arguments and write the stream to stdout as UTF-8 JSON lines."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("n", type=int, help="number of RECORD messages")
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="basic")
    parser.add_argument("--state-every", type=int, default=10_000, metavar="K")
    args = parser.parse_args()
    if args.n < 0 or args.state_every < 1:
        parser.error("N must be >= 0 and --state-every >= 1")
    encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    out = sys.stdout.buffer
    chunk: list[str] = []
    for message in messages(args.n, args.variant, args.state_every):
        chunk.append(encode(message))
        if len(chunk) >= 1000:
            out.write(("\n".join(chunk) + "\n").encode())
            chunk.clear()
    if chunk:
        out.write(("\n".join(chunk) + "\n").encode())
    out.flush()


if __name__ == "__main__":
    main()
