"""Micro-benchmark of the hottest loop of a load: `RowCaster.row_of_values`, which types every
record of every stream, for the old and the new row function, interleaved.

    python bench/rowcast.py [--records 200000] [--rounds 5] [--old REV] [--new PATH]

`old` is `target_postgres_hp/casting.py` as it is at git revision REV (read with `git show`,
nothing in the checkout changes); `new` is the module in the working tree (or the file PATH).
The streams are `gen_stream.py`'s `basic` (12 properties) and `wide` (61 properties). Their
lines are decoded as the target's fast way decodes them (`records.ENVELOPE`, then
`records.RecordFields`: object, array and number columns arrive as `msgspec.Raw` JSON text),
untimed, in chunks; only the `row_of_values(values, short)` calls are timed. Each round runs
old and new on both streams, alternating which goes first, so load from other work on the
machine falls on both; the medians over the rounds are printed.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from target_postgres_hp import casting
from target_postgres_hp.records import ENVELOPE, RecordFields

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import gen_stream  # noqa: E402 - a sibling script, found through the path set just above

#: The last revision with the `exec` row function built from code strings.
OLD_REVISION = "3f2dfce"
CHUNK = 10_000


def load_module(name: str, path: Path) -> ModuleType:
    """Import the file at `path` as module `name`."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def old_module(revision: str, folder: Path) -> ModuleType:
    """casting.py as it is at `revision`."""
    source = subprocess.run(
        ["git", "show", f"{revision}:target_postgres_hp/casting.py"],
        cwd=HERE.parent,
        capture_output=True,
        check=True,
    ).stdout
    path = folder / "casting_old.py"
    path.write_bytes(source)
    return load_module("casting_old", path)


def stream_lines(variant: str, count: int) -> tuple[dict[str, Any], list[str], list[bytes]]:
    """The schema, the key properties and the RECORD lines of a generated stream."""
    encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    schema: dict[str, Any] = {}
    keys: list[str] = []
    lines = []
    for message in gen_stream.messages(count, variant, state_every=count + 1):
        if message["type"] == "SCHEMA":
            schema, keys = message["schema"], message["key_properties"]
        elif message["type"] == "RECORD":
            lines.append(encode(message).encode())
    return schema, keys, lines


def caster_of(module: Any, schema: dict[str, Any], keys: list[str]) -> tuple[Any, RecordFields]:
    """The RowCaster and the RecordFields of a stream, made as `sinks.PostgresSink` makes them
    for a new table on PostgreSQL 14 or later."""
    properties = list(schema["properties"])
    plan = []
    for prop in properties:
        kind = module.effective_type(module.column_type(schema["properties"][prop]), None)
        plan.append((prop, module.cast_for(kind, non_finite_numbers=True), kind))
    json_texts = frozenset(
        index
        for index, (prop, _, kind) in enumerate(plan)
        if kind in module.JSON_TEXT_COLUMNS and prop not in keys
    )
    return module.RowCaster(plan, json_texts), RecordFields(properties, json_texts, keys)


def timed_run(module: Any, schema: dict[str, Any], keys: list[str], lines: list[bytes]) -> float:
    """Seconds spent in `row_of_values` over all lines (decoding, chunk by chunk, untimed)."""
    caster, fields = caster_of(module, schema, keys)
    row_of_values = caster.row_of_values
    short_line = module.SHORT_LINE
    spent = 0.0
    for start in range(0, len(lines), CHUNK):
        chunk = [
            (fields.values(ENVELOPE.decode(line).record), len(line) <= short_line)
            for line in lines[start : start + CHUNK]
        ]
        gc.collect()
        began = time.perf_counter()
        for values, short in chunk:
            row_of_values(values, short)
        spent += time.perf_counter() - began
    return spent


def main() -> None:
    """Run the rounds and print the medians in microseconds per record."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--old", default=OLD_REVISION, metavar="REV")
    parser.add_argument("--new", type=Path, metavar="PATH")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        modules = {
            "old": old_module(args.old, Path(folder)),
            "new": load_module("casting_new", args.new) if args.new else casting,
        }
        streams = {variant: stream_lines(variant, args.records) for variant in ("basic", "wide")}
        times: dict[tuple[str, str], list[float]] = {
            (name, variant): [] for name in modules for variant in streams
        }
        for round_number in range(args.rounds):
            order = list(modules) if round_number % 2 == 0 else list(reversed(modules))
            for variant, (schema, keys, lines) in streams.items():
                for name in order:
                    seconds = timed_run(modules[name], schema, keys, lines)
                    times[name, variant].append(seconds * 1e6 / len(lines))
                    spent = times[name, variant][-1]
                    print(
                        f"round {round_number + 1} {variant} {name}: {spent:.3f}", file=sys.stderr
                    )
    for variant in streams:
        old = statistics.median(times["old", variant])
        new = statistics.median(times["new", variant])
        print(
            f"{variant:5} old {old:.3f} µs/record  new {new:.3f} µs/record"
            f"  new/old {new / old:.3f}  (rounds: {args.rounds}, records: {args.records})"
        )


if __name__ == "__main__":
    main()
