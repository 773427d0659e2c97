"""Typing records into final-table rows (SPEC §4.4): `RowCaster` casts each value of a record
into its column's type in Python before COPY, a value that does not fit becoming NULL with a
`_airbyte_meta` change. What a column type is and how its values are cast is said by its record
in `pgtypes` (the casts are in `casts`); the names of both are importable from here too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

import msgspec

from target_postgres_hp.casts import BIGINT_MAX as BIGINT_MAX
from target_postgres_hp.casts import BIGINT_MIN as BIGINT_MIN
from target_postgres_hp.casts import DIGITS_AS_ZERO, OFFSET_HOURS_REFUSED
from target_postgres_hp.casts import UNFIT as UNFIT
from target_postgres_hp.casts import Cast as Cast
from target_postgres_hp.casts import cast_array as cast_array
from target_postgres_hp.casts import cast_boolean as cast_boolean
from target_postgres_hp.casts import cast_date as cast_date
from target_postgres_hp.casts import cast_integer as cast_integer
from target_postgres_hp.casts import cast_jsonb as cast_jsonb
from target_postgres_hp.casts import cast_object as cast_object
from target_postgres_hp.casts import cast_string as cast_string
from target_postgres_hp.casts import cast_time as cast_time
from target_postgres_hp.casts import cast_timestamp as cast_timestamp
from target_postgres_hp.casts import cast_timestamptz as cast_timestamptz
from target_postgres_hp.casts import cast_timetz as cast_timetz
from target_postgres_hp.casts import json_text as json_text
from target_postgres_hp.casts import make_cast_number as make_cast_number
from target_postgres_hp.pgtypes import ARRAY as ARRAY
from target_postgres_hp.pgtypes import BOOLEAN as BOOLEAN
from target_postgres_hp.pgtypes import DATE as DATE
from target_postgres_hp.pgtypes import INTEGER as INTEGER
from target_postgres_hp.pgtypes import JSON_TEXT_COLUMNS as JSON_TEXT_COLUMNS
from target_postgres_hp.pgtypes import JSONB as JSONB
from target_postgres_hp.pgtypes import NUMBER as NUMBER
from target_postgres_hp.pgtypes import OBJECT as OBJECT
from target_postgres_hp.pgtypes import STRING as STRING
from target_postgres_hp.pgtypes import TIME as TIME
from target_postgres_hp.pgtypes import TIMESTAMP as TIMESTAMP
from target_postgres_hp.pgtypes import TIMESTAMPTZ as TIMESTAMPTZ
from target_postgres_hp.pgtypes import TIMETZ as TIMETZ
from target_postgres_hp.pgtypes import ColumnType as ColumnType
from target_postgres_hp.pgtypes import JsonText, PlainText
from target_postgres_hp.pgtypes import cast_for as cast_for
from target_postgres_hp.pgtypes import catalog_base as catalog_base
from target_postgres_hp.pgtypes import catalog_column_type as catalog_column_type
from target_postgres_hp.pgtypes import column_type as column_type
from target_postgres_hp.pgtypes import effective_type as effective_type
from target_postgres_hp.pgtypes import null_stand_in as null_stand_in
from target_postgres_hp.pgtypes import widening as widening

NULLED = {"change": "NULLED", "reason": "DESTINATION_TYPECAST_ERROR"}

#: A line of at most this many characters holds no number literal with more digits, so the
#: text of a JSON number without exponent from it fits NUMERIC (131072 digits before the
#: point, 16383 after) and is sent as it is (`pgtypes.JsonText`).
SHORT_LINE = 8000

_JSON_VALUE = msgspec.json.Decoder(float_hook=Decimal).decode

#: A plan's column: property name, cast, and the column type (None: always call the cast).
PlanColumn = tuple[str, Cast, ColumnType | None]
RowFunction = Callable[..., tuple[list[Any], bool]]


def _indented(lines: list[str], depth: int = 1) -> list[str]:
    return [" " * 4 * depth + line for line in lines]


def _cast(v: str, i: int) -> list[str]:
    """Call column i's cast and note a value that does not fit."""
    return [f"{v} = c{i}({v})", f"bad = bad or {v} is UNFIT"]


def _json_text_step(v: str, i: int, rule: JsonText, bound: dict[str, Any]) -> list[str]:
    """The JSON text of the line is kept when plain; other text is decoded and cast (a
    number) or is NULL when `null` and does not fit otherwise."""
    bound[f"starts{i}"] = rule.starts
    if rule.number:
        plain = f"short and {v}[0] in starts{i} and 'e' not in {v} and 'E' not in {v}"
        other = [f"{v} = json_value({v})", *_cast(v, i)]
    else:
        plain = f"{v}[0] in starts{i}"
        other = [f"{v} = None if {v} == 'null' else UNFIT", f"bad = bad or {v} is UNFIT"]
    return [
        f"if {v} is not None:",
        f"    {v} = text({v}, 'utf-8')",
        f"    if not ({plain}):",
        *_indented(other, 2),
    ]


def _plain_text_step(v: str, i: int, rule: PlainText, bound: dict[str, Any]) -> list[str]:
    """Text of the plain shape is kept once parsed; any other value is cast. A shape that maps
    layouts to where their offset hours are also NULLs an offset PostgreSQL refuses."""
    bound[f"parse{i}"] = rule.parse
    offset_step: list[str] = []
    if isinstance(rule.shape, tuple):
        length, index, bound[f"char{i}"] = rule.shape
        plain = f"len({v}) == {length} and {v}[{index}] == char{i}"
    elif isinstance(rule.shape, Mapping):
        # `casts.layout` inlined: calling it would cost about as much as the lookup.
        bound[f"offset_at{i}"], bound["zero"] = rule.shape.get, DIGITS_AS_ZERO
        bound["refused_hours"] = OFFSET_HOURS_REFUSED
        plain = (
            f"(at{i} := offset_at{i}({v}.encode('ascii', 'replace').translate(zero))) is not None"
        )
        offset_step = [
            "        else:",
            f"            if at{i} and {v}[at{i}:at{i} + 2] >= refused_hours:",
            f"                {v} = UNFIT",
            "                bad = True",
        ]
    else:
        bound[f"shape{i}"], bound["zero"] = rule.shape, DIGITS_AS_ZERO
        plain = f"{v}.encode('ascii', 'replace').translate(zero) in shape{i}"
    return [
        f"if {v} is not None:",
        f"    if type({v}) is str and {plain}:",
        "        try:",
        f"            parse{i}({v})",
        "        except ValueError:",
        *_indented(_cast(v, i), 3),
        *offset_step,
        "    else:",
        *_indented(_cast(v, i), 2),
    ]


def _kept_step(v: str, i: int, column: ColumnType, bound: dict[str, Any]) -> list[str]:
    """None and the values of `keeps` (within `keeps_range`) are kept; others are cast."""
    kept = f"{v} is None"
    if column.keeps is not None:
        bound[f"keeps{i}"] = column.keeps
        kept = f"type({v}) is keeps{i} or {kept}"  # the common case first
        if column.keeps_range is not None:
            low, high = column.keeps_range
            kept = f"type({v}) is keeps{i} and {low} <= {v} <= {high} or {v} is None"
    return [f"if not ({kept}):", *_indented(_cast(v, i))]


def _row_function(
    plan: list[PlanColumn],
    json_texts: frozenset[int] | None,
    typed: frozenset[int] = frozenset(),
    width: int | None = None,
) -> RowFunction:
    """A function that casts one record into its row and says whether a value did not fit:
    `row(record)` for a dict, or, given `json_texts`, `row(values, short)` for the record's
    values in plan order (`records.RecordFields`; `short`: the line had at most `SHORT_LINE`
    characters), the columns at `json_texts` arriving as the JSON text of the line. The
    values at `typed` were decoded as their column's `decodes_as`, so they are kept as
    they are, with no step. `width`, when known, is how many values `row(values, short)`
    receives: the plan's, then the keys that are not columns.

    This is the hottest loop of a load, so each column's step is inlined into generated code:
    a generic loop over the columns, or a closure per column, types a record 30 to 55 % slower
    (`bench/rowcast.py`). The code is made from the column types' records alone, one shape of
    step per record field (`json_text`, `plain_text`, `keeps`); it holds indexes and the
    integers of `keeps_range`, and binds the other data it tests against by name.
    """
    bound: dict[str, Any] = {"UNFIT": UNFIT, "text": str, "json_value": _JSON_VALUE}
    values = "".join(f"v{i}, " for i in range(len(plan)))
    if json_texts is None:
        code = ["def row(record):", "    get = record.get", "    bad = False"]
    else:
        # With the number of values known, they are unpacked exactly, the extra ones (keys
        # that are not columns) into names left unused: a third as costly as `*_`.
        extra = "*_" if width is None else "".join(f"_{j}, " for j in range(width - len(plan)))
        code = ["def row(values, short):", f"    [{values}{extra}] = values", "    bad = False"]
    for i, (name, cast, column) in enumerate(plan):
        v = f"v{i}"
        bound[f"n{i}"], bound[f"c{i}"] = name, cast
        if json_texts is None:
            code.append(f"    {v} = get(n{i})")
        if i in typed:
            continue
        if column is None:
            step = _cast(v, i)
        elif json_texts is not None and i in json_texts and column.json_text is not None:
            step = _json_text_step(v, i, column.json_text, bound)
        elif column.plain_text is not None:
            step = _plain_text_step(v, i, column.plain_text, bound)
        else:
            step = _kept_step(v, i, column, bound)
        code += _indented(step)
    code.append(f"    return [{values}], bad")
    exec("\n".join(code), bound)  # noqa: S102 - the code is made from indexes and integers
    function: RowFunction = bound["row"]
    return function


class RowCaster:
    """Casts records into final-table rows: the property columns in table order.

    `plan` gives, per column, the property name, the cast and the column type (which lets the
    common values skip the cast call); the values at `typed` are checked by the decoder of
    `typed_row`. `row()` returns the values and the `_airbyte_meta`
    changes for the values that did not fit; `row_of_values()` does the same for a record
    already decoded into its values (`json_texts` names the columns that arrive as JSON text).
    """

    def __init__(
        self,
        plan: list[PlanColumn],
        json_texts: frozenset[int] = frozenset(),
        typed: frozenset[int] = frozenset(),
        width: int | None = None,
    ) -> None:
        self.names = [name for name, _, _ in plan]
        self._row = _row_function(plan, None)
        #: `values_row(values, short)`: the row of a record decoded into its values (`width`
        #: of them, when known), and whether a value did not fit (then `nulled` makes the row
        #: storable).
        self.values_row = _row_function(plan, json_texts, width=width)
        #: The same for values decoded by `records.RecordFields.strict`, whose values at
        #: `typed` are kept as they are.
        self.typed_row = _row_function(plan, json_texts, typed, width) if typed else self.values_row

    def nulled(self, values: list[Any]) -> list[dict[str, str]]:
        """NULL for each value that did not fit (UNFIT), and the changes that record it."""
        changes = []
        for index, name in enumerate(self.names):
            if values[index] is UNFIT:
                values[index] = None
                changes.append({"field": name, **NULLED})
        return changes

    def _changes(self, values: list[Any], bad: bool) -> tuple[list[Any], list[dict[str, str]]]:
        return values, self.nulled(values) if bad else []

    def row(self, record: Mapping[str, Any]) -> tuple[list[Any], list[dict[str, str]]]:
        """The typed values of one record and the changes typing made."""
        return self._changes(*self._row(record))

    def row_of_values(
        self,
        values: tuple[Any, ...],
        short: bool,
    ) -> tuple[list[Any], list[dict[str, str]]]:
        """The same for a record decoded by `records.RecordFields`, its values in plan order
        (extra values at the end are ignored); `short`: its line had at most `SHORT_LINE`
        characters."""
        return self._changes(*self.values_row(values, short))
