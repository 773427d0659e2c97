"""The row function against the one it replaced (`casting.RowCaster`): for records of every
column type, typed or not, as a dict (`row`) and as the values `records.RecordFields` decodes
from a line (`row_of_values`, with JSON text for the JSON-text columns), the new function gives
the same values of the same types, the same NULLs and the same `_airbyte_meta` changes (or
raises the same error) as the pre-redesign reference below.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from target_postgres_hp.casting import (
    BIGINT_MAX,
    BIGINT_MIN,
    JSON_TEXT_COLUMNS,
    NULLED,
    SHORT_LINE,
    UNFIT,
    Cast,
    RowCaster,
    cast_for,
)
from target_postgres_hp.pgtypes import TYPES, ColumnType
from target_postgres_hp.reader import _decode
from target_postgres_hp.records import ENVELOPE, RecordFields

STRING, NUMBER, INTEGER, BOOLEAN, OBJECT, ARRAY, JSONB = TYPES[:7]
TIMESTAMPTZ, TIMESTAMP, TIMETZ, TIME, DATE = TYPES[7:]

# --- PRE-REDESIGN REFERENCE -------------------------------------------------------------------
# `_compile_row` and its tables as they were in target_postgres_hp/casting.py at 3f2dfce, before
# the column types became records (pgtypes) and the row function was made from them. Copied
# as it was, only its tables now key the new records, `JSON_TEXT_COLUMNS` is renamed
# `_JSON_TEXT_COLUMNS` and `SHORT_LINE` is imported. It is the oracle of the tests below: do
# not change it.

_PLAIN_DATETIME = re.compile(
    r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:\.\d{1,6})?(?:Z|[+-]\d\d(?::?\d\d)?)?"
)


#: The values each column type takes as they are, tested inline before calling its cast.
_PASS_THROUGH = {
    STRING: "v{i} is None or type(v{i}) is str",
    INTEGER: f"type(v{{i}}) is int and {BIGINT_MIN} <= v{{i}} <= {BIGINT_MAX}",
    NUMBER: "v{i} is None or type(v{i}) is int",
    BOOLEAN: "v{i} is None or type(v{i}) is bool",
}

#: Column types whose plain text (pattern) is sent as it is once it parses (parser).
#: For a date, ten characters with a dash at 7 that `date.fromisoformat` accepts can only be
#: YYYY-MM-DD (it refuses non-ASCII digits; a week date has its dash at 8).
_PLAIN_TEXT = {
    TIMESTAMPTZ: ("plain_datetime(v{i}) is not None", "datetime_from_iso"),
    TIMESTAMP: ("plain_datetime(v{i}) is not None", "datetime_from_iso"),
    DATE: ("len(v{i}) == 10 and v{i}[7] == '-'", "date_from_iso"),
}

#: Numbers taken as they are when read from a line of at most `SHORT_LINE` characters: no
#: literal there can have more digits than that, so a Decimal whose leading digit is within
#: 8000 places of the point fits NUMERIC (131072 digits before the point, 16383 after).
_SHORT_NUMBER = (
    "v{i} is None or (short and (type(v{i}) is int"
    " or (type(v{i}) is Decimal and -8000 < v{i}.adjusted() < 8000)))"
)

#: Column types whose values a decoded line can hand over as their JSON text (`msgspec.Raw`),
#: with the first character the column takes (None: any JSON value). A NUMBER takes the text
#: of a JSON number as it is: PostgreSQL reads it exactly, as Decimal would.
_JSON_TEXT_COLUMNS: dict[ColumnType, str | None] = {
    OBJECT: "{",
    ARRAY: "[",
    JSONB: None,
    NUMBER: None,
}
#: The first characters of a JSON number.
_NUMBER_START = frozenset("-0123456789")
_JSON_VALUE = msgspec.json.Decoder(float_hook=Decimal).decode


def _compile_row(
    plan: list[tuple[str, Cast, ColumnType | None]], json_texts: frozenset[int] | None = None
) -> Callable[..., tuple[list[Any], bool]]:
    """A function that casts one record into its row with the casts of `plan` inlined, and
    says whether a value did not fit.

    Most values already have the Python type their column takes (a str for VARCHAR, an int
    within range for BIGINT), so the generated code tests that inline and calls the cast only
    for the others; on wide streams this halves the cost of typing, the hottest loop of a load.

    Without `json_texts` the function takes the record as a dict. With it, it takes the
    record's values in plan order (`row(values, short)`, see `records.RecordFields`): the
    columns in `json_texts` then arrive as the JSON text of the line (`msgspec.Raw`), which
    needs no encoding, and `short` says the line was at most `SHORT_LINE` characters long.
    """
    namespace: dict[str, Any] = {
        "UNFIT": UNFIT,
        "Decimal": Decimal,
        "text": str,
        "NUMBER_START": _NUMBER_START,
        "json_value": _JSON_VALUE,
        "plain_datetime": _PLAIN_DATETIME.fullmatch,
        "datetime_from_iso": datetime.fromisoformat,
        "date_from_iso": date.fromisoformat,
    }
    by_position = json_texts is not None
    count = len(plan)
    if by_position:
        lines = ["def row(values, short):"]
        if count:
            lines.append("    " + "".join(f"v{i}, " for i in range(count)) + "*_ = values")
    else:
        lines = ["def row(record):", "    get = record.get"]
    lines.append("    bad = False")

    def cast_call(i: int, indent: str, argument: str = "v{i}") -> None:
        """The lines that call column i's cast and note a value that did not fit."""
        lines.append(f"{indent}v{i} = c{i}({argument.format(i=i)})")
        lines.append(f"{indent}bad = bad or v{i} is UNFIT")

    for i, (name, cast, column) in enumerate(plan):
        namespace[f"n{i}"] = name
        namespace[f"c{i}"] = cast
        if not by_position:
            lines.append(f"    v{i} = get(n{i})")
        if json_texts is not None and i in json_texts and column in _JSON_TEXT_COLUMNS:
            lines.append(f"    if v{i} is not None:")
            lines.append(f"        v{i} = text(v{i}, 'utf-8')")
            first = _JSON_TEXT_COLUMNS[column]
            if column is NUMBER:
                # A plain literal (no exponent) from a short line fits NUMERIC; anything else
                # (a string, a boolean, null, an exponent) is decoded and cast.
                lines.append(
                    f"        if not (short and v{i}[0] in NUMBER_START"
                    f" and 'e' not in v{i} and 'E' not in v{i}):"
                )
                cast_call(i, " " * 12, "json_value(v{i})")
            elif first is None:
                lines.append(f"        if v{i} == 'null':")
                lines.append(f"            v{i} = None")
            else:
                lines.append(f"        if v{i}[0] != {first!r}:")
                lines.append(f"            v{i} = None if v{i} == 'null' else UNFIT")
                lines.append(f"            bad = bad or v{i} is UNFIT")
            continue
        plain = _PLAIN_TEXT.get(column) if column is not None else None
        if plain is not None:
            # Text PostgreSQL reads as Python does is sent as it is, once Python has found it
            # a valid date (what the cast would do, without its three calls).
            pattern, parse = plain
            lines.append(f"    if v{i} is not None:")
            lines.append(f"        if type(v{i}) is str and {pattern.format(i=i)}:")
            lines.append("            try:")
            lines.append(f"                {parse}(v{i})")
            lines.append("            except ValueError:")
            lines.append(f"                v{i} = UNFIT")
            lines.append("                bad = True")
            lines.append("        else:")
            cast_call(i, " " * 12)
            continue
        test = _PASS_THROUGH.get(column) if column is not None else None
        if by_position and column is NUMBER:
            test = _SHORT_NUMBER
        if test is None:
            cast_call(i, " " * 4)
        else:
            lines.append(f"    if not ({test.format(i=i)}):")
            cast_call(i, " " * 8)
    lines.append("    return [" + ", ".join(f"v{i}" for i in range(count)) + "], bad")
    exec("\n".join(lines), namespace)  # noqa: S102 - the source is built above from indexes only
    function: Callable[..., tuple[list[Any], bool]] = namespace["row"]
    return function


# --- end of the reference -----------------------------------------------------------------------


def reference(
    plan: list[tuple[str, Cast, ColumnType | None]], json_texts: frozenset[int] | None = None
) -> Callable[..., tuple[list[Any], list[dict[str, str]]]]:
    """The reference row function with `RowCaster._changes` as it was."""
    row = _compile_row(plan, json_texts)
    names = [name for name, _, _ in plan]

    def typed(*arguments: Any) -> tuple[list[Any], list[dict[str, str]]]:
        values, bad = row(*arguments)
        changes = []
        if bad:
            for index, name in enumerate(names):
                if values[index] is UNFIT:
                    values[index] = None
                    changes.append({"field": name, **NULLED})
        return values, changes

    return typed


def outcome(typed: Callable[..., Any], *arguments: Any) -> Any:
    """What a row function gives, exactly: each value's type and repr, and the changes; or
    the error it raises."""
    try:
        values, changes = typed(*arguments)
    except Exception as error:
        return ("raises", type(error), str(error))
    return [(type(value), repr(value)) for value in values], changes


#: Column types drawn by name, which a failing example shows.
BY_NAME = {kind.name: kind for kind in TYPES}

#: A column: its type's name, whether the plan gives the type (else the cast is always
#: called), and its value.
Cell = tuple[str, bool, Any]


def columns(values: st.SearchStrategy[Any]) -> st.SearchStrategy[list[Cell]]:
    """Columns of every type and a few more, in any order."""
    every = st.tuples(*(st.tuples(st.just(name), st.booleans(), values) for name in BY_NAME))
    more = st.lists(st.tuples(st.sampled_from(list(BY_NAME)), st.booleans(), values), max_size=4)
    return st.tuples(every, more).flatmap(lambda drawn: st.permutations([*drawn[0], *drawn[1]]))


def plan_of(cells: list[Cell], non_finite: bool) -> list[tuple[str, Cast, ColumnType | None]]:
    plan: list[tuple[str, Cast, ColumnType | None]] = []
    for i, (name, typed, _) in enumerate(cells):
        kind = BY_NAME[name]
        cast = cast_for(kind, non_finite_numbers=non_finite)
        plan.append((f"p{i}", cast, kind if typed else None))
    return plan


#: Texts of every shape the steps tell apart: numbers, booleans, dates, date-times, times,
#: valid or not, plain or not (week dates, basic format, non-ASCII digits, long fractions).
SAMPLE_TEXTS = [
    *["", "x", " 12 ", "12", "-1.5e3", "1.50", "NaN", "-Infinity", "true", "false", "null"],
    *["2024-01-02", "2024-1-02", "2023-W01-1", "20240102", "2024-02-30"],
    *["\uff12\uff10\uff12\uff14-01-02", "\u0662\u0660\u0662\u0664-\u0660\u0661-\u0660\u0662"],
    *["2024-01-02T03:04:05", "2024-01-02 03:04:05.123456Z", "2024-01-02T03:04:05,5-03"],
    *["2024-01-02T03:04:05.1234567+01:00", "2024-02-30T10:00:00Z", "2024-13-01 00:00:00+0530"],
    *["9999-12-31T23:59:59.9999999Z", "10:00:00", "10:00:00.9999995Z", "25:00", "03:04:05+01:00"],
]
TEXTS = st.sampled_from(SAMPLE_TEXTS)
#: Python scalars past the edges: BIGINT's, NUMERIC's, finite numbers'.
SAMPLE_VALUES = [
    *[None, True, False, 0, BIGINT_MIN, BIGINT_MAX, BIGINT_MIN - 1, BIGINT_MAX + 1, 2**70],
    *[1.5, float("nan"), float("-inf"), Decimal("2.50"), Decimal("NaN"), Decimal("-Infinity")],
    *[Decimal("1e-9000"), Decimal("1e-20000"), Decimal("1E+200000")],
    *[[], {}, [1, "x"], {"a": None}],
]
#: Python values a record may hold, as the standard library or msgspec decode JSON, and a few
#: no decoder makes (floats, non-finite Decimals).
PYTHON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.sampled_from(SAMPLE_VALUES)
    | st.decimals(allow_nan=True, allow_infinity=True)
    | st.floats()
    | TEXTS
    | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=6,
)
EXAMPLES = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@EXAMPLES
@given(columns(PYTHON_VALUES), st.booleans(), st.data())
def test_row_of_a_dict_is_the_reference_row(
    cells: list[Cell], non_finite: bool, data: st.DataObject
) -> None:
    plan = plan_of(cells, non_finite)
    present = data.draw(st.lists(st.booleans(), min_size=len(cells), max_size=len(cells)))
    record = {f"p{i}": value for i, (_, _, value) in enumerate(cells) if present[i]}
    record["extra"] = "not a column"
    assert outcome(RowCaster(plan).row, record) == outcome(reference(plan), record)


def _json(value: Any) -> str:
    """JSON text of a value, Decimals as their literal."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, list):
        return "[" + ",".join(_json(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{_json(v)}" for k, v in value.items()) + "}"
    return json.dumps(value, ensure_ascii=False)


#: JSON texts of values, as a line holds them: number literals as written (exponents, many
#: digits, past BIGINT and past what msgspec decodes), strings, containers.
SAMPLE_LITERALS = [
    *["0", "-0", "1.50", "-0.0000001", "1e5", "2E-3", "1e999999", "-1e-999999"],
    *["9223372036854775807", "9223372036854775808", "-9223372036854775809"],
    *["123456789012345678901234567890", "1" + "0" * 5000, "1." + "1" * 9000],
    *["0." + "0" * 16400 + "1", "[]", "{}", '{"a": [1, "x"], "b": 1.50}'],
]
JSON_TEXTS = (
    st.sampled_from(SAMPLE_LITERALS)
    | st.decimals(allow_nan=False, allow_infinity=False).map(str)
    | st.recursive(
        st.none() | st.booleans() | st.integers() | TEXTS | st.text(max_size=8),
        lambda children: (
            st.lists(children, max_size=3)
            | st.dictionaries(st.text(max_size=4), children, max_size=3)
        ),
        max_leaves=6,
    ).map(_json)
)


@EXAMPLES
@given(columns(JSON_TEXTS), st.booleans(), st.booleans(), st.data())
def test_row_of_decoded_values_is_the_reference_row(
    cells: list[Cell], non_finite: bool, long_line: bool, data: st.DataObject
) -> None:
    """Made as `sinks` makes them: keys (which a record must have) and some other columns
    (the deletion markers) are decoded values, the other JSON-text columns arrive as JSON
    text; the line is short or long (`SHORT_LINE`). The slow way's dict of the same line
    is compared too."""
    plan = plan_of(cells, non_finite)
    names = [name for name, _, _ in plan]
    keys = data.draw(st.lists(st.sampled_from(names), unique=True, max_size=2))
    eligible = [i for i, (kind, _, _) in enumerate(cells) if BY_NAME[kind] in JSON_TEXT_COLUMNS]
    markers = data.draw(st.sets(st.sampled_from(eligible), max_size=2))
    json_texts = frozenset(i for i in eligible if names[i] not in keys and i not in markers)
    present = data.draw(st.lists(st.booleans(), min_size=len(cells), max_size=len(cells)))
    members = [
        f'"{name}": {text}'
        for name, (_, _, text), keep in zip(names, cells, present, strict=True)
        if keep or name in keys
    ]
    if long_line:
        members.append(f'"pad": "{"x" * SHORT_LINE}"')
    line = ('{"type":"RECORD","stream":"s","record":{' + ", ".join(members) + "}}").encode()
    values = RecordFields(names, json_texts, keys).values(ENVELOPE.decode(line).record)
    assume(values is not None)  # a line the fast way leaves to the slow way
    short = len(line) <= SHORT_LINE
    new = outcome(RowCaster(plan, json_texts).row_of_values, values, short)
    assert new == outcome(reference(plan, json_texts), values, short)
    try:
        record = _decode(line)[0]["record"]
    except ValueError:
        return  # an integer of more digits than Python reads: the reader refuses the line
    assert outcome(RowCaster(plan).row, record) == outcome(reference(plan), record)


@pytest.mark.parametrize("non_finite", [False, True])
@pytest.mark.parametrize("typed", [True, False])
def test_every_sample_in_every_type_is_the_reference_row(typed: bool, non_finite: bool) -> None:
    """Each sample value in a column of each type, as a dict and as decoded values, the
    JSON-text columns as JSON text or decoded (keys, deletion markers), from a short line and
    from a long one."""
    cells: list[Cell] = [(name, typed, None) for name in BY_NAME]
    plan = plan_of(cells, non_finite)
    names = [name for name, _, _ in plan]
    for value in [*SAMPLE_VALUES, *SAMPLE_TEXTS]:
        record = dict.fromkeys(names, value)
        assert outcome(RowCaster(plan).row, record) == outcome(reference(plan), record)
    eligible = frozenset(i for i, name in enumerate(BY_NAME) if BY_NAME[name] in JSON_TEXT_COLUMNS)
    texts = [*SAMPLE_LITERALS, *map(json.dumps, SAMPLE_TEXTS), "true", "false", "null"]
    compared = 0
    for json_texts in (eligible, frozenset()):
        fields = RecordFields(names, json_texts, [])
        for text, pad in itertools.product(texts, ["", "x" * SHORT_LINE]):
            members = ", ".join(f'"{name}": {text}' for name in names)
            line = f'{{"record":{{{members}, "pad": "{pad}"}}, "type":"RECORD"}}'.encode()
            values = fields.values(ENVELOPE.decode(line).record)
            if values is None:
                continue  # the fast way leaves the line to the slow way
            short = len(line) <= SHORT_LINE
            new = outcome(RowCaster(plan, json_texts).row_of_values, values, short)
            assert new == outcome(reference(plan, json_texts), values, short), text
            compared += 1
    assert compared > len(texts) * 3
