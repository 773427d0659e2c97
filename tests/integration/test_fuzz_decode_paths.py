"""Differential fuzzing of the two ways a RECORD line enters (SPEC §4.3, §4.4, §5, §9): the fast
way (`records.ENVELOPE`, then `decode.RecordDecoder.from_text`) and the general way
(`reader.LineReader.deserialize_json`, then `decode.RecordDecoder.from_dict`) must leave
exactly the same tables behind, or fail with exactly the same error.

hypothesis writes Singer input: schemas whose property names come from all of Unicode (quotes,
backslashes, control characters, lone surrogates, empty names, names of 63 bytes and more,
names differing only in case or only in characters that become `_`) with every type of the
type table, and records holding every kind of JSON value and edge value (integers beyond 64
bits, 1e400, -0.0, 1.0, huge exponents, bare NaN/Infinity as taps send them, `\\u0000` escapes
at any depth, lone surrogates, non-BMP characters, deep nesting, empty strings/objects/arrays,
strings that look like dates, numbers or booleans), written in different ways: keys plain, as
`\\uXXXX` escapes or duplicated, envelopes with members in any order and a decoy `stream` or
`record` member before the real one; schemas that change mid-stream; STATEs in between.

Each example is loaded twice, into two databases, by two runs of the real target in separate
processes, concurrently, from the same input file with the same config:
- `fast`: the target as users run it; its `_fast_record` is wrapped only to count the lines it
  takes, so the test knows the fast way was really used;
- `general`: the same target with `_route_records` replaced by one that routes no stream to
  the fast way, so every RECORD line takes the general way. This changes no product code and
  nothing else about the run: a stream map or `flattening_enabled` would also turn the fast way
  off, but they put the SDK's mapper into the general way and so compare something else.

Both databases are then compared table by table (the same tables, columns, types and column
comments) and row by row in arrival order: every column as text, `_airbyte_data` and
`_airbyte_meta` (without `sync_id`) included; only the raw ids, the extraction/load times and
the sync id differ. The runs must also print the same STATEs and the same ERROR lines, and no
traceback. Beside the differential check, cheap independent oracles: the fast run took exactly
the lines it should (no `\\u0000` escape, JSON msgspec reads, property names msgspec can match);
a run whose input holds nothing SPEC lets fail loads; `_airbyte_data` is the record with NULs
removed and NaN/Infinity as strings (a top-level key cleaned to a key already held kept under
a suffix, no value lost), with a TRUNCATED change per top-level property cleaned;
the `oracle_int`, `oracle_bool` and `oracle_num` columns hold exactly what SPEC §4.4 says, NULL
plus a NULLED change otherwise.

Bounded for CI: `HP_FUZZ_EXAMPLES` examples (default 60: 50 to 75 s on 2 cores, each example a
batch of records through both ways). For a longer local hunt: `HP_FUZZ_EXAMPLES=1000
.venv/bin/python -m pytest tests/integration/test_fuzz_decode_paths.py` (the timeout grows with
it). A failure prints the failing input (`note`) and leaves it in the example's `input.jsonl`;
`HP_FUZZ_SHRINK=1` lets hypothesis shrink it first (minutes).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pytest
from hypothesis import HealthCheck, Phase, event, given, note, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from psycopg import sql
from servers import PgDatabase, PostgresServer

from .targetrun import Run

pytestmark = pytest.mark.integration

EXAMPLES = int(os.environ.get("HP_FUZZ_EXAMPLES", "60"))
#: Shrinking a failure runs the target hundreds of times (minutes), so only on request.
PHASES = (
    tuple(Phase)
    if os.environ.get("HP_FUZZ_SHRINK")
    else (Phase.explicit, Phase.reuse, Phase.generate)
)

#: Runs the target as its console script does, in the mode given as first argument.
DRIVER = """
import atexit, sys
from target_postgres_hp.target import TargetPostgresHP

mode = sys.argv.pop(1)
if mode == "general":
    def _route_records(self, stream_name):
        self.reader.fast_routes.remove(stream_name)

    TargetPostgresHP._route_records = _route_records
else:
    taken = [0]
    fast_record = TargetPostgresHP._fast_record

    def _fast_record(self, *args):
        handler = fast_record(self, *args)

        def counted(*args):
            took = handler(*args)
            taken[0] += took
            return took

        return counted

    TargetPostgresHP._fast_record = _fast_record
    atexit.register(lambda: sys.stderr.write(f"FAST-RECORDS {taken[0]}\\n"))
TargetPostgresHP.cli()
"""

NULLED = {"change": "NULLED", "reason": "DESTINATION_TYPECAST_ERROR"}
TRUNCATED = {"change": "TRUNCATED", "reason": "DESTINATION_SERIALIZATION_ERROR"}
BIGINT = range(-(2**63), 2**63)
ORACLES = {
    "oracle_int": {"type": "integer"},
    "oracle_bool": {"type": ["boolean", "null"]},
    "oracle_num": {"type": "number"},
}

# --------------------------------------------------------------------------- JSON text


@dataclass(frozen=True)
class Lit:
    """A JSON literal written as it is: a number as a tap may write it, or a bare NaN."""

    text: str
    #: The literal can make a run fail (a number PostgreSQL's NUMERIC cannot hold).
    may_fail: bool = False


@dataclass(frozen=True)
class Obj:
    """A JSON object as its members in order, duplicate keys allowed."""

    members: tuple[tuple[str, Any], ...]


@dataclass(frozen=True)
class Deep:
    """A value nested `depth` arrays/objects deep."""

    depth: int
    inner: Any


def _utf16_escapes(text: str) -> str:
    units = text.encode("utf-16-be", "surrogatepass")
    return "".join(f"\\u{units[i] << 8 | units[i + 1]:04x}" for i in range(0, len(units), 2))


def json_string(text: str, style: str) -> str:
    """A JSON string: `raw` (UTF-8, lone surrogates escaped), `ascii` or `escaped` (every
    character as `\\uXXXX`)."""
    if style == "escaped":
        return f'"{_utf16_escapes(text)}"'
    written = json.dumps(text, ensure_ascii=style == "ascii")
    return re.sub("[\ud800-\udfff]", lambda match: _utf16_escapes(match.group()), written)


def json_text(value: Any, style: str) -> str:
    """The JSON text of a generated value; object keys and strings written in `style`."""
    if isinstance(value, Lit):
        return value.text
    if isinstance(value, str):
        return json_string(value, style)
    if isinstance(value, Obj):
        members = (f"{json_string(k, style)}:{json_text(v, style)}" for k, v in value.members)
        return "{" + ",".join(members) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(json_text(item, style) for item in value) + "]"
    if isinstance(value, Deep):
        opening = "".join('{"k":' if level % 2 else "[" for level in range(value.depth))
        closing = "".join("}" if level % 2 else "]" for level in reversed(range(value.depth)))
        return opening + json_text(value.inner, style) + closing
    if isinstance(value, dict):
        return json_text(Obj(tuple(value.items())), style)
    return json.dumps(value)


def may_fail(value: Any) -> bool:
    """Whether the value holds something SPEC lets a run fail on."""
    if isinstance(value, Lit):
        return value.may_fail
    if isinstance(value, Obj):
        return any(may_fail(item) for _, item in value.members)
    if isinstance(value, list):
        return any(may_fail(item) for item in value)
    if isinstance(value, Deep):
        return value.depth > 1000 or may_fail(value.inner)
    return False


# --------------------------------------------------------------------------- strategies

ANY_CHAR = st.characters(exclude_categories=())
NUMBERS = st.sampled_from(
    [
        "0",
        "-0",
        "-0.0",
        "1.0",
        "42.0",
        "1e3",
        "1E+2",
        "2.5e1",
        "1e400",
        "-1e400",
        "1e-400",
        "5e-324",
        "1.5",
        "-7",
        "0.1",
        "1e18",
        "9.223372036854775807e18",
        "3.14159265358979323846264338327950288419716939937510",
        "123456789012345678901234567890",
        str(2**63 - 1),
        str(2**63),
        str(-(2**63)),
        str(-(2**63) - 1),
        str(2**64),
        str(3**100),
        "NaN",
        "Infinity",
        "-Infinity",
        # What PostgreSQL's NUMERIC (and so JSONB) cannot hold, and its edges: 131072 digits
        # before the point, 16383 after.
        "1e200000",
        "-1E+200000",
        "1e-20000",
        "1e131072",
        "1e131071",
        "-9.9e131070",
        "1e-16383",
        "1.5e-16383",
        "0e-16384",
        "1e99999999999999999999",
        # Spellings a string column must keep as written.
        "1E5",
        "1.50",
        "0.000001",
        "0.0000001",
        "-0.0e0",
    ]
).map(Lit)
STRINGS = st.sampled_from(
    [
        "",
        " ",
        "\x00",
        "a\x00b",
        "\ud800",
        "x\udfffy",
        "\ud83d\ude00",
        "😀",
        "\U0010ffff",
        "é",
        "E\u0301",
        "\u2028",
        "\\u0000",
        '"',
        "\\",
        "{}",
        "[]",
        "2024-01-02",
        "2024-01-02T03:04:05Z",
        "2024-01-02T03:04:05.1234567+05:30",
        "2024-01-02 03:04:05",
        "2024-02-30",
        "0001-01-01T00:00:00+14:00",
        "10:00:00",
        "10:00:00+01",
        "23:59:59.9999999",
        # Offsets beyond PostgreSQL's ±15:59, leap seconds, 24:00:00 and a lowercase z.
        "2024-01-02T03:04:05+20:00",
        "2024-01-02T03:04:05.5-16:00",
        "2024-01-02 03:04:05+1559",
        "2024-01-02T03:04:05+16",
        "12:00:00-23:00",
        "12:00:00+15:59",
        "23:59:60",
        "23:59:60+03",
        "23:59:60.5",
        "2024-12-31T23:59:60Z",
        "2024-01-01T12:30:60.000+02:00",
        "24:00:00",
        "2024-01-01T24:00:00",
        "2024-01-01 24:00:00.1",
        "2024-01-02T03:04:05z",
        "2024-01-02t03:04:05.123z",
        "10:00:00z",
        "12",
        "-1.5e3",
        " 42 ",
        "1e3",
        "1e400",
        "0x10",
        "\u0663",
        "true",
        "false",
        "True",
        "NaN",
        "-Infinity",
        "null",
    ]
) | st.text(ANY_CHAR, max_size=6)
SCALARS = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | NUMBERS | STRINGS
KEYS = st.sampled_from(["", "k", "a\x00", "\x00", "\ud800", "é", "K"]) | st.text(
    ANY_CHAR, max_size=3
)


def _containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    lists = st.lists(children, max_size=3)
    objects = st.lists(st.tuples(KEYS, children), max_size=3).map(lambda m: Obj(tuple(m)))
    return st.one_of(lists, objects, lists, objects, st.builds(Deep, st.integers(1, 40), SCALARS))


VALUES = st.recursive(SCALARS, _containers, max_leaves=4)
#: Now and then a value nested nearly as deep as SPEC §9 promises to load (1,000 levels) or
#: deeper (an error naming the line).
RARE_VALUES = st.builds(Deep, st.sampled_from([300, 990, 5000]), SCALARS)


def _field_types() -> st.SearchStrategy[dict[str, Any]]:
    atoms = [
        {"type": "string"},
        {"type": "number"},
        {"type": "integer"},
        {"type": "boolean"},
        {"type": "object"},
        {"type": "array"},
        {"type": "string", "format": "date-time"},
        {"type": "string", "format": "date-time", "airbyte_type": "timestamp_with_timezone"},
        {"type": "string", "format": "date-time", "airbyte_type": "timestamp_without_timezone"},
        {"type": "string", "format": "time"},
        {"type": "string", "format": "time", "airbyte_type": "time_with_timezone"},
        {"type": "string", "format": "time", "airbyte_type": "time_without_timezone"},
        {"type": "string", "format": "date"},
        {"type": "number", "airbyte_type": "integer"},
    ]
    combined = [
        {},
        {"type": "unknown"},
        {"type": ["null"]},
        {"type": ["string", "integer"]},
        {"type": ["number", "boolean", "null"]},
        {"type": ["array", "object"]},
        {"type": ["integer", "string"], "format": "date"},
        {"anyOf": [{"type": "string", "format": "date-time"}, {"type": "string"}]},
        {"anyOf": [{"type": "string", "format": "date"}, {"type": "integer"}]},
        {"anyOf": [{"type": "object"}, {}]},
    ]
    atom = st.sampled_from(atoms)
    return (
        atom
        | atom.map(lambda a: {**a, "type": ["null", a["type"]]})
        | atom.map(lambda a: {"anyOf": [{"type": "null"}, a]})
        | st.sampled_from(combined)
    )


FIELD_TYPES = _field_types()
NAMES = st.sampled_from(
    [
        "",
        "id",
        "ID",
        "Id",
        "a b",
        "a-b",
        "a.b",
        "a_b",
        '"',
        'a"b',
        "\\",
        "a\\b",
        "\x00",
        "a\x00",
        "\n",
        "\x1f",
        "\x7f",
        "\ud800",
        "é",
        "E\u0301",
        "😀",
        "x" * 63,
        "x" * 64,
        "é" * 32,
        "n" * 70 + "1",
        "n" * 70 + "2",
        "_airbyte_raw_id",
        "_airbyte_meta",
        "1abc",
        "select",
        "xmin",
    ]
)
#: Names that conform to themselves, mostly: more streams the fast way can take.
PLAIN_NAMES = st.text(
    st.characters(categories=["L", "N", "Pc", "Pd", "Zs"], exclude_characters="\u2028\u2029"),
    max_size=8,
)
NAMES = st.one_of(NAMES, PLAIN_NAMES, PLAIN_NAMES, st.text(ANY_CHAR, max_size=5)).filter(
    lambda name: not name.startswith("oracle_")
)
STREAM_NAMES = st.sampled_from(["S0", "é", "a b", "t" * 70, "0"])
STYLES = st.sampled_from(["raw", "ascii", "escaped"])
#: Extraction times before 2025, so that the snapshots tell them from read times.
TIMES_EXTRACTED = st.sampled_from(
    ["2024-05-01T10:00:00Z", "2024-05-01T10:00:00", "2024-05-01 12:00:00.1234567+02:00", "x", 5]
)


@dataclass
class Stream:
    name: str
    properties: dict[str, Any]
    keys: list[str]


@dataclass
class Example:
    """One generated input: its lines, and what the oracles need to know about them."""

    lines: list[str] = field(default_factory=list)
    #: Per RECORD line (index into `lines`): the stream and whether the fast way must take it
    #: (None: it may or may not).
    records: dict[int, tuple[str, bool | None]] = field(default_factory=dict)
    #: Something SPEC lets fail: a huge exponent, nesting beyond 1,000 levels, a member that
    #: becomes a key property once its NULs are removed.
    may_fail: bool = False
    #: Stream `s0` is keyless and has the `oracle_*` properties.
    oracles: bool = False
    #: The table layout both ways load in (`direct` decodes a record with its envelope).
    layout: str = "raw_and_final"

    @property
    def text(self) -> str:
        return "".join(line + "\n" for line in self.lines)

    @classmethod
    def of(cls, *lines: str, may_fail: bool = False) -> Example:
        """An example written by hand."""
        example = cls(list(lines), may_fail=may_fail)
        for index, line in enumerate(lines):
            message = json.loads(line)
            if message["type"] == "RECORD":
                example.records[index] = (message["stream"], fast_way_takes(line))
        return example


def record_value(stream: Stream, name: str, draw: st.DrawFn) -> Any:
    """A value of the property: any value, but a key's fits its column (SPEC §6.3)."""
    if name in stream.keys:
        if stream.properties[name]["type"] == "integer":
            return draw(st.integers(-(2**63), 2**63 - 1) | st.sampled_from([Lit("1.0"), "7"]))
        return draw(st.sampled_from(["k", "", "é", "K", "k\x00"]))
    if draw(st.integers(0, 150)) == 0:
        return draw(RARE_VALUES)
    return draw(VALUES)


@st.composite
def examples(draw: st.DrawFn) -> Example:
    """Singer input for one or two streams: SCHEMAs, RECORDs written in many ways, STATEs."""
    streams = [Stream("s0", {**ORACLES}, [])]
    for name, spec in draw(st.lists(st.tuples(NAMES, FIELD_TYPES), max_size=6)):
        streams[0].properties.setdefault(name, spec)
    if draw(st.booleans()):
        properties = dict(draw(st.lists(st.tuples(NAMES, FIELD_TYPES), max_size=4)))
        keys = []
        if draw(st.booleans()):
            key = draw(NAMES)
            properties[key] = {"type": draw(st.sampled_from(["integer", "string"]))}
            keys.append(key)
        streams.append(Stream(draw(STREAM_NAMES), properties, keys))
    example = Example(oracles=True, layout=draw(st.sampled_from(["raw_and_final", "direct"])))
    for stream in streams:
        example.lines.append(schema_line(stream, draw(STYLES)))
    count = draw(st.integers(1, 30))
    evolve_at = draw(st.integers(0, count * 3))
    for position in range(count):
        if position == evolve_at:
            extra = draw(st.lists(st.tuples(NAMES, FIELD_TYPES), min_size=1, max_size=3))
            streams[0].properties = {**streams[0].properties, **dict(extra)}
            example.lines.append(schema_line(streams[0], draw(STYLES)))
        stream = streams[draw(st.integers(0, len(streams) - 1))]
        example.lines.append(record_line(stream, example, draw))
        if draw(st.integers(0, 5)) == 0:
            example.lines.append(json.dumps({"type": "STATE", "value": {"at": position}}))
    return example


def schema_line(stream: Stream, style: str) -> str:
    message = {
        "type": "SCHEMA",
        "stream": stream.name,
        "schema": {"type": "object", "properties": stream.properties},
        "key_properties": stream.keys,
    }
    return json_text(message, style)


def record_line(stream: Stream, example: Example, draw: st.DrawFn) -> str:
    """A RECORD line; notes whether the fast way must take it."""
    names = list(stream.properties)
    present = draw(st.lists(st.sampled_from(names), max_size=len(names) + 2)) if names else []
    present = [*stream.keys, *present]
    members = [(name, record_value(stream, name, draw)) for name in present]
    extra = st.tuples(KEYS.filter(lambda name: name not in stream.keys), VALUES)
    members += draw(st.lists(extra, max_size=2))
    if draw(st.booleans()):
        members = draw(st.permutations(members))
    record = Obj(tuple(members))
    envelope: list[tuple[str, Any]] = [("type", "RECORD"), ("stream", stream.name)]
    envelope.append(("record", record))
    if draw(st.booleans()):
        envelope.append(("time_extracted", draw(TIMES_EXTRACTED)))
    if draw(st.integers(0, 3)) == 0:
        # One integer version only: records of two versions without an ACTIVATE_VERSION are
        # a reload's business (test_spec6_versions), not the decoders'.
        envelope.append(("version", draw(st.sampled_from([7, Lit("7.0"), "7", None]))))
    if draw(st.integers(0, 5)) == 0:
        envelope = draw(st.permutations(envelope))
    # Decoys: of a member given twice, the last one counts.
    for name, decoys in (("stream", STREAM_NAMES), ("record", VALUES)):
        if draw(st.integers(0, 4)) == 0:
            envelope.insert(envelope.index((name, dict(envelope)[name])), (name, draw(decoys)))
    style = draw(STYLES)
    line = json_text(Obj(tuple(envelope)), style)
    # A member named like a key property once its NULs are removed may replace the key's value.
    cleaned = [name.replace("\x00", "") for name, _ in members if "\x00" in name]
    shadows = any(name in stream.keys for name in cleaned)
    example.may_fail = example.may_fail or may_fail(record) or shadows
    fast = fast_way_takes(line, example.layout)
    example.records[len(example.lines)] = (stream.name, fast)
    return line


class _Members(list[tuple[str, Any]]):
    """A JSON object as its members, duplicates kept."""


def fast_way_takes(line: str, layout: str = "raw_and_final") -> bool | None:
    """Whether the fast way must take a RECORD line: it has no NUL escape, msgspec reads it
    and its record is an object (a `stream` given twice with two values is read by the
    envelope decoder, whose last value wins). A record whose property names msgspec cannot
    match is still taken: the stream's decoder reads it into a dict itself. In the direct
    layout, where the record is decoded with its envelope, a `record` given twice may or may
    not be (None): its first value is decoded too, as the record unless the stream has a
    property name msgspec cannot match, and a record decoded whole that lacks a key is left
    to the slow way. A record holding a number NUMERIC cannot hold (even as a shadowed
    duplicate), or a string that looks like one after a `:`, `,` or `[`, is read the dict way,
    which keeps such a number as its text: by the stream's decoder (the fast way) or, in the
    direct layout, the reader's slow way (None)."""
    if "\\u0000" in line:
        return False
    try:
        message = _MSGSPEC.decode(line)
    except (msgspec.DecodeError, RecursionError):
        return False
    except ArithmeticError:  # an exponent beyond Decimal's: the envelope decoder may take it
        return None
    if not isinstance(message.get("record"), dict):
        return False
    members = json.loads(line, object_pairs_hook=_Members, parse_float=_number)
    if _holds_unholdable(members) or _LOOKS_UNHOLDABLE.search(line):
        return None
    if layout == "direct" and sum(name == "record" for name, _ in members) > 1:
        return None
    return True


_LOOKS_UNHOLDABLE = re.compile(r"[:,\[]\s*-?[0-9][0-9.]*[eE][-+]?[0-9]{4}")


def _number(text: str) -> Decimal | str:
    try:
        return Decimal(text)
    except ArithmeticError:
        return "UNHOLDABLE"


def beyond_numeric(value: Decimal | str) -> bool:
    """PostgreSQL's NUMERIC holds 131072 digits before the point and 16383 after."""
    return value == "UNHOLDABLE" or (
        isinstance(value, Decimal)
        and value.is_finite()
        and not (value.as_tuple().exponent >= -16383 and value.adjusted() < 131072)  # type: ignore[operator]
    )


def _holds_unholdable(value: Any) -> bool:
    """Whether a value read with `_Members` holds a number beyond NUMERIC (any depth)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, list):  # a `_Members` list of pairs, or an array
            stack.extend(item)
        elif isinstance(item, tuple):
            stack.append(item[1])
        elif beyond_numeric(item):
            return True
    return False


_MSGSPEC = msgspec.json.Decoder(float_hook=Decimal)


# --------------------------------------------------------------------------- runs


@dataclass(frozen=True)
class Databases:
    """The database each way loads into, and a superuser connection to read it."""

    fast: PgDatabase
    general: PgDatabase
    fast_reader: psycopg.Connection[Any]
    general_reader: psycopg.Connection[Any]


@pytest.fixture(scope="module")
def databases(pg16: PostgresServer) -> Iterator[Databases]:
    """Two databases for the module, one per way; each example loads into its own schemas."""
    fast = PgDatabase.create(pg16)
    try:
        general = PgDatabase.create(pg16)
        try:
            yield Databases(fast, general, fast.admin(), general.admin())
        finally:
            general.drop()
    finally:
        fast.drop()


def run_both(
    databases: Databases, text: str, workdir: Path, schema: str, layout: str = "raw_and_final"
) -> tuple[Run, Run]:
    """Run the target in both modes at once on the same input and config."""
    workdir.mkdir(parents=True)
    input_path = workdir / "input.jsonl"
    input_path.write_text(text, encoding="utf-8")
    started = []
    for mode, db in (("fast", databases.fast), ("general", databases.general)):
        moddir = workdir / mode
        (moddir / "tmp").mkdir(parents=True)
        config = db.config(schema=schema, raw_data_schema=f"{schema}_raw", table_layout=layout)
        (moddir / "config.json").write_text(json.dumps(config))
        with input_path.open("rb") as stdin:
            process = subprocess.Popen(
                [sys.executable, "-c", DRIVER, mode, "--config", str(moddir / "config.json")],
                stdin=stdin,
                stdout=(moddir / "stdout").open("wb"),
                stderr=(moddir / "stderr").open("wb"),
                env={**os.environ, "TMPDIR": str(moddir / "tmp")},
                cwd=moddir,
            )
        started.append((process, moddir))
    runs = []
    for process, moddir in started:
        returncode = process.wait(timeout=240)
        runs.append(
            Run(
                returncode,
                (moddir / "stdout").read_text(errors="replace"),
                (moddir / "stderr").read_text(errors="replace"),
                moddir / "tmp",
            )
        )
    return runs[0], runs[1]


# --------------------------------------------------------------------------- snapshots


def snapshot(conn: psycopg.Connection[Any], schemas: list[str]) -> dict[tuple[str, str], Any]:
    """Every table of the schemas: its columns (name, type, comment) and its rows in arrival
    order, each column as text, but for the ids, times and sync ids."""
    tables = conn.execute(
        "SELECT n.nspname, c.relname, c.oid FROM pg_class c JOIN pg_namespace n"
        " ON n.oid = c.relnamespace WHERE n.nspname = ANY(%s) AND c.relkind = 'r'",
        (schemas,),
    ).fetchall()
    found: dict[tuple[str, str], Any] = {}
    for schema, table, oid in tables:
        columns = conn.execute(
            "SELECT attname, format_type(atttypid, atttypmod), col_description(attrelid, attnum)"
            " FROM pg_attribute WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped"
            " ORDER BY attnum",
            (oid,),
        ).fetchall()
        selected = []
        for name, _, _ in columns:
            column = sql.Identifier(name)
            if name == "_airbyte_raw_id":
                continue
            if name == "_airbyte_extracted_at":  # the record's own time, not the time read
                selected.append(
                    sql.SQL("CASE WHEN {0} < '2025-01-01' THEN {0}::text END").format(column)
                )
            elif name == "_airbyte_loaded_at":
                selected.append(sql.SQL("{} IS NULL").format(column))
            elif name == "_airbyte_meta":
                selected.append(sql.SQL("({} - 'sync_id')::text").format(column))
            else:
                selected.append(sql.SQL("{}::text").format(column))
        query = sql.SQL("SELECT {} FROM {} ORDER BY _airbyte_raw_id").format(
            sql.SQL(", ").join(selected) if selected else sql.SQL("1"),
            sql.Identifier(schema, table),
        )
        found[(schema, table)] = (columns, conn.execute(query).fetchall())
    return found


def assert_same_tables(
    fast: dict[tuple[str, str], Any], general: dict[tuple[str, str], Any]
) -> None:
    assert sorted(fast) == sorted(general), "the two ways made different tables"
    # The direct layout stores a property the schema lacks nowhere. Its one-pass decoder never
    # sees such a property, so it records no TRUNCATED change for it (an unholdable number
    # there, say); the slow way cleans the whole record and does. Such a change is left out
    # of the comparison there; every change of a column's property still counts.
    direct = not any(schema.endswith("_raw") for schema, _ in fast)
    for table in sorted(fast):
        fast_columns, fast_rows = fast[table]
        general_columns, general_rows = general[table]
        assert fast_columns == general_columns, f"columns of {table} differ"
        assert len(fast_rows) == len(general_rows), f"row counts of {table} differ"
        names = [name for name, _, _ in fast_columns if name != "_airbyte_raw_id"]
        stored = set(names)
        for index, (mine, theirs) in enumerate(zip(fast_rows, general_rows, strict=True)):
            for name, a, b in zip(names, mine, theirs, strict=True):
                if direct and name == "_airbyte_meta":
                    a, b = _stored_changes(a, stored), _stored_changes(b, stored)
                assert a == b, f"{table} row {index} column {name!r}: fast {a!r}, general {b!r}"


def _stored_changes(meta: str | None, columns: set[str]) -> Any:
    """`_airbyte_meta` text without TRUNCATED changes of properties that have no column."""
    if meta is None:
        return None
    value = json.loads(meta)
    value["changes"] = [
        change
        for change in value.get("changes", [])
        if change.get("change") != "TRUNCATED" or change.get("field") in columns
    ]
    return value


# --------------------------------------------------------------------------- oracles


class Unholdable(str):
    """A number NUMERIC cannot hold, as it was written (see `exact`)."""


def exact(text: str) -> Decimal | str:
    """`parse_float` of the oracles: a number beyond NUMERIC is its text (`Unholdable`)."""
    number = _number(text)
    return Unholdable(text) if beyond_numeric(number) else number


def storable(value: Any) -> tuple[Any, bool]:
    """SPEC §9: NULs removed from strings and keys, NaN/Infinity and numbers beyond NUMERIC
    as strings; changed?"""
    if isinstance(value, Unholdable):
        return str(value), True
    if isinstance(value, str):
        cleaned = value.replace("\x00", "")
        if any("\ud800" <= c <= "\udfff" for c in cleaned):
            cleaned = cleaned.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        return cleaned, cleaned != value
    if isinstance(value, float) and not math.isfinite(value):
        return ("NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"), True
    if isinstance(value, list):
        items = [storable(item) for item in value]
        return [item for item, _ in items], any(changed for _, changed in items)
    if isinstance(value, dict):
        cleaned_dict: dict[str, Any] = {}
        changed = False
        for key, item in value.items():
            new_key, key_changed = storable(key)
            new_item, item_changed = storable(item)
            cleaned_dict[new_key] = new_item
            changed = changed or key_changed or item_changed
        return cleaned_dict, changed
    return value, False


def renamed_properties(properties: list[str]) -> dict[str, str]:
    """SPEC §9: the key a property whose name holds NUL is kept under: its name without NUL,
    else (another property has it, or a name earlier in code point order took it) that name
    with the first free `_<n>`."""
    taken = set(properties)
    renamed: dict[str, str] = {}
    for name in sorted(properties):
        cleaned, changed = storable(name)
        if not changed:
            continue
        key, number = cleaned, 2
        while key in taken:
            key, number = f"{cleaned}_{number}", number + 1
        renamed[name] = key
        taken.add(key)
    return renamed


def storable_record(record: dict[str, Any], properties: list[str]) -> dict[str, Any]:
    """The record as the raw table keeps it: a key that needs no cleaning keeps its value;
    a schema property whose name holds NUL is kept under its renamed key, any other key
    under its cleaned name; neither takes a key already given, and the latter not a renamed
    property's key (then `_<n>`): no value is lost."""
    renamed = renamed_properties(properties)
    data = {key: storable(value)[0] for key, value in record.items() if not storable(key)[1]}
    dirty = [key for key in record if storable(key)[1]]
    for key in sorted(dirty, key=lambda key: key not in renamed):
        wanted = renamed.get(key, storable(key)[0])
        stored, number = wanted, 2
        while stored in data or (key not in renamed and stored in renamed.values()):
            stored, number = f"{wanted}_{number}", number + 1
        data[stored] = storable(record[key])[0]
    return data


def same_json(a: Any, b: Any) -> bool:
    """JSON equality that tells booleans from numbers and compares numbers by value."""
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        return type(a) is type(b) and a == b
    if isinstance(a, (int, Decimal)) and isinstance(b, (int, Decimal)):
        return Decimal(a) == Decimal(b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_json(a[key], b[key]) for key in a)
    return type(a) is type(b) and a == b


def expected_int(value: Any) -> int | str | None:
    """SPEC §4.4 for an integer column: the value, or "NULLED"."""
    if value is None:
        return None
    if isinstance(value, Unholdable):
        return "NULLED"
    if type(value) is int:
        return value if value in BIGINT else "NULLED"
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value):
        return int(value) if int(value) in BIGINT else "NULLED"
    if isinstance(value, Decimal) and value.is_finite() and value.adjusted() < 20:
        whole = value.to_integral_value()
        return int(whole) if whole == value and int(whole) in BIGINT else "NULLED"
    if isinstance(value, str) and re.search(r"\d", value):
        return "UNKNOWN"  # whitespace, exponents, other scripts' digits: not judged here
    return "NULLED"


def expected_bool(value: Any) -> bool | str | None:
    if value is None or type(value) is bool:
        return value
    if isinstance(value, Unholdable):
        return "NULLED"
    return (
        {"true": True, "false": False}.get(value, "NULLED") if isinstance(value, str) else "NULLED"
    )


def expected_num(value: Any) -> Decimal | str | None:
    if value is None:
        return None
    if isinstance(value, Unholdable):
        return "NULLED"
    if type(value) is int:
        return Decimal(value)
    if isinstance(value, Decimal):
        return (
            value
            if value.is_finite()
            and value.as_tuple().exponent >= -16383
            and value.adjusted() < 131072
            else "NULLED"
        )  # type: ignore[operator]
    if isinstance(value, float):
        return Decimal(value)  # a bare NaN or ±Infinity: PostgreSQL 14+ NUMERIC holds them
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]+(\.[0-9]+)?", value):
        return Decimal(value)
    if isinstance(value, str) and (
        re.search(r"\d", value) or "inf" in value.lower() or "nan" in value.lower()
    ):
        return "UNKNOWN"
    return "NULLED"


def check_oracles(conn: psycopg.Connection[Any], schema: str, example: Example) -> None:
    """The stream `s0`, keyless and loaded whole: raw data (but in the direct layout, which
    has none), TRUNCATED and the oracle columns."""
    direct = example.layout == "direct"
    raw = (
        []
        if direct
        else conn.execute(
            sql.SQL(
                "SELECT _airbyte_data::text, _airbyte_meta FROM {} ORDER BY _airbyte_raw_id"
            ).format(sql.Identifier(f"{schema}_raw", f"{schema}_raw__stream_s0"))
        ).fetchall()
    )
    final = conn.execute(
        sql.SQL(
            "SELECT oracle_int, oracle_bool, oracle_num, _airbyte_meta FROM {}"
            " ORDER BY _airbyte_raw_id"
        ).format(sql.Identifier(schema, "s0"))
    ).fetchall()
    sent = [
        json.loads(example.lines[index], parse_float=exact)["record"]
        for index, (stream, _) in sorted(example.records.items())
        if stream == "s0"
    ]
    # The properties of the SCHEMA of s0 in effect at each of its records.
    schemas: list[list[str]] = []
    current: list[str] = []
    for index, line in enumerate(example.lines):
        message = json.loads(line)
        if message["type"] == "SCHEMA" and message["stream"] == "s0":
            current = list(message["schema"]["properties"])
        elif example.records.get(index, ("",))[0] == "s0":
            schemas.append(current)
    # A record of a table version makes the stream a full refresh (SPEC §6.1): the table
    # holds that load, the records from the first versioned one on.
    versions = [
        json.loads(example.lines[index]).get("version")
        for index, (stream, _) in sorted(example.records.items())
        if stream == "s0"
    ]
    first = next(
        (n for n, v in enumerate(versions) if type(v) is int),
        None,
    )
    if first is not None:
        sent, schemas = sent[first:], schemas[first:]
    assert len(final) == len(sent)
    assert direct or len(raw) == len(final)
    for number, (record, row) in enumerate(zip(sent, final, strict=True)):
        cleaned = storable_record(record, schemas[number])
        raw_meta = None
        if not direct:
            data, raw_meta = raw[number]
            stored = json.loads(data, parse_float=Decimal, parse_int=Decimal)  # 131072 digits
            assert same_json(stored, cleaned), f"record {number}"
        truncated = sorted(
            storable(key)[0]
            for key, value in record.items()
            if storable(key)[1] or storable(value)[1]
        )
        changes = row[3]["changes"]
        if raw_meta is not None:
            assert raw_meta["changes"] == [c for c in changes if c["change"] == "TRUNCATED"]
        assert sorted(c["field"] for c in changes if c["change"] == "TRUNCATED") == truncated
        nulled = {c["field"] for c in changes if c["change"] == "NULLED"}
        for position, (column, expected) in enumerate(
            [
                ("oracle_int", expected_int),
                ("oracle_bool", expected_bool),
                ("oracle_num", expected_num),
            ]
        ):
            # Typing sees the cleaned value, but a bare NaN/Infinity is still a number, and
            # so is a number beyond NUMERIC.
            value = record.get(column)
            value = value if isinstance(value, (float, Unholdable)) else cleaned.get(column)
            expect = expected(value)
            got = row[position]
            where = f"record {number} {column}: sent {value!r}, got {got!r}"
            if expect == "UNKNOWN":
                continue
            if expect == "NULLED":
                assert got is None, where
                assert column in nulled, where
            else:
                assert column not in nulled, where
                if isinstance(expect, Decimal) and not expect.is_finite():
                    assert str(got) == str(expect).replace("sNaN", "NaN"), where
                else:
                    assert got == expect, where
                    assert type(got) is type(expect), where


# --------------------------------------------------------------------------- the tests

_SCHEMA_NUMBERS = itertools.count()


def tell(text: str) -> None:
    """Shown with a failure: by hypothesis in the fuzz test, by pytest's output capture else."""
    if currently_in_test_context():
        note(text)
    else:
        print(text)


@contextmanager
def deep_recursion() -> Iterator[None]:
    """Room to decode and compare records nested as deep as the target reads them (it raises
    Python's recursion limit while reading, see `reader.RECURSION_LIMIT`; hypothesis sets it
    to 2,000 frames more than the test's own depth)."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 20_000))
    try:
        yield
    finally:
        sys.setrecursionlimit(limit)


def check_both_ways(databases: Databases, workdir: Path, example: Example) -> None:
    """Load the example both ways and compare; then the oracles."""
    with deep_recursion():
        _check_both_ways(databases, workdir, example)


def _check_both_ways(databases: Databases, workdir: Path, example: Example) -> None:
    tell(f"input:\n{example.text}")
    schema = f"fz{next(_SCHEMA_NUMBERS)}"
    fast, general = run_both(databases, example.text, workdir / schema, schema, example.layout)
    tell(f"fast run:\n{fast.stderr}\ngeneral run:\n{general.stderr}")
    for run in (fast, general):
        assert "Traceback" not in run.stderr, run.stderr[-3000:]
    if currently_in_test_context():
        event(f"exit code {fast.returncode}")
    assert fast.returncode == general.returncode
    assert fast.error_lines() == general.error_lines()
    assert fast.stdout == general.stdout
    schemas = [schema, f"{schema}_raw"]
    assert_same_tables(
        snapshot(databases.fast_reader, schemas), snapshot(databases.general_reader, schemas)
    )
    taken = int(re.findall(r"FAST-RECORDS (\d+)", fast.stderr)[-1])
    share = "no" if not taken else "some" if taken < len(example.records) else "all"
    if currently_in_test_context():
        event(f"the fast way took {share} records")
    if example.may_fail:
        return
    assert fast.returncode == 0, fast.error_lines()
    sure = sum(fast is True for _, fast in example.records.values())
    maybe = sum(fast is None for _, fast in example.records.values())
    # The fast way takes at least the records it surely can. It may take more than the
    # oracle foresees since a record holding an unholdable number is read the dict way by
    # the stream's own decoder (counted as fast): CI found 10 taken of 4 + 4 foreseen once,
    # with the tables of both ways equal; the oracle's upper bound is to be made exact again.
    assert sure <= taken
    if taken > sure + maybe and currently_in_test_context():
        event("the fast way took more records than the oracle foresees")
    if example.oracles:
        check_oracles(databases.fast_reader, schema, example)


@pytest.mark.timeout(300 + 10 * EXAMPLES)
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    phases=PHASES,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(example=examples())
def test_fast_and_general_way_load_the_same(
    databases: Databases, tmp_path_factory: pytest.TempPathFactory, example: Example
) -> None:
    check_both_ways(databases, tmp_path_factory.mktemp("fuzz"), example)


def _schema(properties: dict[str, Any], keys: list[str] | None = None) -> str:
    message = {
        "type": "SCHEMA",
        "stream": "s",
        "schema": {"properties": properties},
        "key_properties": keys or [],
    }
    return json.dumps(message)


def _record(text: str) -> str:
    return '{"type":"RECORD","stream":"s","record":' + text + "}"


#: Inputs that broke a way, minimised: each must load the same both ways, with no traceback.
FOUND = {
    "property names msgspec cannot match (records.py, fixed)": Example.of(
        _schema({'a"b': {"type": "integer"}, "a\\b": {}, "\t": {"type": "string"}}),
        _record('{"a\\"b": 1, "a\\\\b": [2], "\\t": "x"}'),
        _record('{"\\u0061\\u0022b": 3}'),
    ),
    "key property whose name the SDK conforms to nothing": Example.of(
        _schema({"é": {"type": "string"}}, ["é"]), _record('{"é": "x"}')
    ),
    "property name with a lone surrogate": Example.of(
        _schema({"\ud800": {"type": "string"}}), _record('{"\\ud800": "x"}')
    ),
    "property named like a system column": Example.of(
        _schema({"xmin": {"type": "integer"}}), _record('{"xmin": 1}')
    ),
    "shadowed duplicate key holding a number NUMERIC cannot hold": Example.of(
        _schema({"a": {"type": "integer"}}), _record('{"a": 1e999999, "a": 1}')
    ),
}


@pytest.mark.parametrize("name", list(FOUND))
def test_inputs_the_fuzzer_found_load_the_same(
    databases: Databases, tmp_path: Path, name: str
) -> None:
    check_both_ways(databases, tmp_path, FOUND[name])
