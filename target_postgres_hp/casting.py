"""Typing rules (SPEC §4.3, §4.4): which column type a JSON-schema property gets, and how a JSON
value is cast into that column in Python before COPY.

A cast either returns the value to write (None for NULL) or `UNFIT`: the value does not fit the
column, so the final table gets NULL and `_airbyte_meta.changes` records the property. Casts are
plain functions of one value, so typing costs no server round trip and no per-value PL/pgSQL.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any, Final

import msgspec

from target_postgres_hp.rawdata import make_storable


class _Unfit:
    """The marker of a value that does not fit its column."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "UNFIT"


UNFIT: Final = _Unfit()

Cast = Callable[[Any], Any]

BIGINT_MIN = -(2**63)
BIGINT_MAX = 2**63 - 1


@dataclass(frozen=True)
class ColumnType:
    """A final-table column type: its name in this module, its SQL, its catalog spelling, and
    the narrower types an existing column may widen from to it (SPEC §7)."""

    name: str
    sql: str
    #: `format_type()` spelling, to recognise the type in an existing table.
    catalog: str
    #: (name of a narrower type, how its values convert: `{}` stands for the column). Besides
    #: these, any scalar widens to string and anything to JSONB (`widening`).
    widens_from: tuple[tuple[str, str], ...] = ()


STRING = ColumnType("string", "VARCHAR", "character varying")
NUMBER = ColumnType("number", "DECIMAL", "numeric", (("integer", "{}::numeric"),))
INTEGER = ColumnType("integer", "BIGINT", "bigint")
BOOLEAN = ColumnType("boolean", "BOOLEAN", "boolean")
OBJECT = ColumnType("object", "JSONB", "jsonb")
ARRAY = ColumnType("array", "JSONB", "jsonb")
#: JSONB that receives any JSON value: unions including object/array, `{}`, unknown types.
JSONB = ColumnType("jsonb", "JSONB", "jsonb")
TIMESTAMPTZ = ColumnType(
    "timestamptz",
    "TIMESTAMP WITH TIME ZONE",
    "timestamp with time zone",
    (("date", "{}::timestamp AT TIME ZONE 'UTC'"), ("timestamp", "{} AT TIME ZONE 'UTC'")),
)
TIMESTAMP = ColumnType(
    "timestamp", "TIMESTAMP", "timestamp without time zone", (("date", "{}::timestamp"),)
)
TIMETZ = ColumnType(
    "timetz", "TIME WITH TIME ZONE", "time with time zone", (("time", "{}::timetz"),)
)
TIME = ColumnType("time", "TIME", "time without time zone")
DATE = ColumnType("date", "DATE", "date")

_DATETIME_TYPES = (TIMESTAMPTZ, TIMESTAMP, TIMETZ, TIME, DATE)

# SPEC §4.3: array > object > string > date/time types > number > integer > boolean.
_GENERALITY = {
    ARRAY: 6,
    OBJECT: 5,
    STRING: 4,
    **dict.fromkeys(_DATETIME_TYPES, 3),
    NUMBER: 2,
    INTEGER: 1,
    BOOLEAN: 0,
}


def _string_atom(schema: Mapping[str, Any]) -> ColumnType:
    fmt = schema.get("format")
    airbyte_type = schema.get("airbyte_type")
    if fmt == "date-time":
        return TIMESTAMP if airbyte_type == "timestamp_without_timezone" else TIMESTAMPTZ
    if fmt == "time":
        return TIMETZ if airbyte_type == "time_with_timezone" else TIME
    if fmt == "date":
        return DATE
    return STRING


def _atoms(schema: Any) -> tuple[set[ColumnType], bool]:
    """The non-null column types a property schema allows, and whether it names any type at
    all (a schema with no type, `{}`, is JSONB)."""
    if not isinstance(schema, Mapping):
        return set(), False
    atoms: set[ColumnType] = set()
    typed = False
    for key in ("anyOf", "oneOf"):
        branches = schema.get(key)
        if isinstance(branches, list):
            for branch in branches:
                branch_atoms, branch_typed = _atoms(branch)
                if not branch_typed:
                    return {JSONB}, True
                atoms |= branch_atoms
                typed = True
    declared = schema.get("type")
    if declared is None:
        return atoms, typed
    names = declared if isinstance(declared, list) else [declared]
    for name in names:
        typed = True
        if name == "null":
            continue
        if name == "string":
            atoms.add(_string_atom(schema))
        elif name == "number":
            atoms.add(INTEGER if schema.get("airbyte_type") == "integer" else NUMBER)
        elif name == "integer":
            atoms.add(INTEGER)
        elif name == "boolean":
            atoms.add(BOOLEAN)
        elif name == "object":
            atoms.add(OBJECT)
        elif name == "array":
            atoms.add(ARRAY)
        else:
            atoms.add(JSONB)
    return atoms, typed


def column_type(schema: Any) -> ColumnType:
    """The column type of one top-level property (SPEC §4.3)."""
    atoms, typed = _atoms(schema)
    if not typed or not atoms or JSONB in atoms:
        return JSONB
    if len(atoms) == 1:
        return next(iter(atoms))
    best = max(atoms, key=lambda atom: _GENERALITY[atom])
    if best in (ARRAY, OBJECT):
        return JSONB
    if best in _DATETIME_TYPES and len(atoms & set(_DATETIME_TYPES)) > 1:
        # Two different date/time formats share no narrower type than text.
        return STRING
    return best


@dataclass(frozen=True)
class CatalogType:
    """A column type as PostgreSQL's catalog spells it (`format_type()` without modifiers), in
    an existing table: the column type its values are cast to, and the value that stands for
    NULL in a key index on servers before PostgreSQL 15, which have no NULLS NOT DISTINCT (the
    index holds `COALESCE(k, stand-in)` and `k IS NULL`, so two NULL components compare equal
    and a NULL never equals the stand-in itself)."""

    column_type: ColumnType
    null_stand_in: str | None


#: Every catalog type the target reads from existing tables: the one table of what it knows
#: of PostgreSQL's types there.
CATALOG_TYPES: dict[str, CatalogType] = {
    "character varying": CatalogType(STRING, "''"),
    "text": CatalogType(STRING, "''"),
    # Key indexes made before these types had a stand-in keep their plain column term.
    "character": CatalogType(STRING, None),
    "numeric": CatalogType(NUMBER, "0"),
    "double precision": CatalogType(NUMBER, "0"),
    "real": CatalogType(NUMBER, "0"),
    "bigint": CatalogType(INTEGER, "0"),
    "integer": CatalogType(INTEGER, "0"),
    "smallint": CatalogType(INTEGER, "0"),
    "boolean": CatalogType(BOOLEAN, "false"),
    "jsonb": CatalogType(JSONB, "'null'::jsonb"),
    "json": CatalogType(JSONB, None),
    "timestamp with time zone": CatalogType(TIMESTAMPTZ, "'-infinity'::timestamptz"),
    "timestamp without time zone": CatalogType(TIMESTAMP, "'-infinity'::timestamp"),
    "time with time zone": CatalogType(TIMETZ, "'00:00+00'::timetz"),
    "time without time zone": CatalogType(TIME, "'00:00'::time"),
    "date": CatalogType(DATE, "'-infinity'::date"),
}


def _catalog(catalog_type: str) -> CatalogType | None:
    return CATALOG_TYPES.get(catalog_base(catalog_type))


def null_stand_in(catalog_type: str) -> str | None:
    """The SQL of the value standing for NULL in a pre-15 key index on a column of this type."""
    known = _catalog(catalog_type)
    return known.null_stand_in if known else None


def effective_type(wanted: ColumnType, catalog_type: str | None) -> ColumnType:
    """The type values are cast to: the column's actual type in the table, read through the
    property's own type when both agree (so an `object` column stays strict)."""
    if catalog_type is None:
        return wanted
    if catalog_base(catalog_type) == wanted.catalog:
        return wanted
    known = _catalog(catalog_type)
    return known.column_type if known else STRING


def catalog_base(catalog_type: str) -> str:
    """A `format_type()` spelling without its modifiers: `character varying(20)` → the type."""
    return re.sub(r"\(.*\)", "", catalog_type).strip()


def catalog_column_type(catalog_type: str) -> ColumnType | None:
    """The column type a `format_type()` spelling stands for, if this target knows it."""
    known = _catalog(catalog_type)
    return known.column_type if known else None


def widening(catalog_type: str, wanted: ColumnType) -> tuple[ColumnType, str] | None:
    """The type an existing column must change to so it can hold `wanted` values, with the
    conversion of its current values; None when it can already hold them or when `wanted` is
    narrower or incompatible (the column is then kept).

    Widenings: integer → number, date → timestamp, timestamp → timestamptz, time → timetz,
    any scalar → string (the value's JSON text: `5`, `true`, `2024-01-01T10:00:00+00:00`),
    anything → JSONB (`to_jsonb`).
    """
    existing = catalog_column_type(catalog_type)
    if existing is None or existing.catalog == wanted.catalog:
        return None
    if wanted.catalog == "jsonb":
        return (wanted, "to_jsonb({})") if existing.catalog != "jsonb" else None
    if existing.catalog == "jsonb":
        return None
    if wanted is STRING:
        return (STRING, "to_jsonb({}) #>> '{{}}'")
    using = dict(wanted.widens_from).get(existing.name)
    return (wanted, using) if using else None


# --- casts -------------------------------------------------------------------------------------

_JSON = msgspec.json.Encoder(decimal_format="number")

_NUMERIC_TEXT = re.compile(r"\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\s*")
_NON_FINITE_TEXT = {
    "nan": "NaN",
    "infinity": "Infinity",
    "+infinity": "Infinity",
    "-infinity": "-Infinity",
    "inf": "Infinity",
    "+inf": "Infinity",
    "-inf": "-Infinity",
}
_LONG_FRACTION = re.compile(r"[.,](\d{7,})")


def json_text(value: Any) -> str:
    """`value` as JSON text JSONB accepts (NaN/Infinity become strings).

    The encoder writes a float NaN as `null` and a Decimal NaN as a bare `NaN`; output that
    might hold either is encoded again from the value with those made strings.
    """
    try:
        encoded = _JSON.encode(value)
    except UnicodeEncodeError:  # a lone surrogate: replaced, as the raw table has it
        encoded = b"NaN"
    if b"NaN" in encoded or b"Infinity" in encoded or b"null" in encoded:
        encoded = _JSON.encode(make_storable(value)[0])
    return encoded.decode("utf-8")


def _decimal_text(value: Decimal) -> str:
    if value.is_finite():
        return str(value)
    if value.is_nan():
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def cast_string(value: Any) -> Any:
    """Any scalar as its text; objects and arrays as JSON text."""
    kind = type(value)
    if kind is str or value is None:
        return value
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return str(value)
    if kind is Decimal:
        return _decimal_text(value)
    if kind is float:
        return _decimal_text(Decimal(value)) if not math.isfinite(value) else repr(value)
    return json_text(value)


def _integral(value: Decimal) -> Any:
    # adjusted() is the exponent of the leading digit: anything past 10**18 is beyond BIGINT,
    # and rejecting it here spares building a huge int from an exponent like 1e1000000000.
    if not value.is_finite() or value.adjusted() > 18 or value != value.to_integral_value():
        return UNFIT
    number = int(value)
    return number if BIGINT_MIN <= number <= BIGINT_MAX else UNFIT


def _numeric_text(value: str) -> Decimal | None:
    if _NUMERIC_TEXT.fullmatch(value):
        return Decimal(value.strip())
    return None


#: PostgreSQL's NUMERIC holds up to 131072 digits before the point and 16383 after it.
_NUMERIC_MAX_WHOLE_DIGITS = 131072
_NUMERIC_MAX_FRACTION_DIGITS = 16383
_NUMERIC_MAX_INT_BITS = 400_000


def _within_numeric(number: Decimal) -> bool:
    exponent = number.as_tuple().exponent
    return (
        number.adjusted() < _NUMERIC_MAX_WHOLE_DIGITS
        and isinstance(exponent, int)
        and -exponent <= _NUMERIC_MAX_FRACTION_DIGITS
    )


def cast_integer(value: Any) -> Any:
    """JSON integers within BIGINT, integral numbers and strings holding them."""
    kind = type(value)
    if kind is int:
        return value if BIGINT_MIN <= value <= BIGINT_MAX else UNFIT
    if value is None:
        return None
    if kind is Decimal:
        return _integral(value)
    if kind is float:
        return _integral(Decimal(value)) if math.isfinite(value) else UNFIT
    if kind is str:
        number = _numeric_text(value)
        return UNFIT if number is None else _integral(number)
    return UNFIT


def make_cast_number(non_finite: bool) -> Cast:
    """The number cast; `non_finite` says whether the server's DECIMAL holds NaN and
    ±Infinity (PostgreSQL 14 and later)."""

    def finite_or_allowed(number: Decimal) -> Any:
        if number.is_finite():
            return number if _within_numeric(number) else UNFIT
        return number if non_finite else UNFIT

    def cast_number(value: Any) -> Any:
        """Any JSON number or numeric string, exactly."""
        kind = type(value)
        if kind is Decimal:
            return finite_or_allowed(value)
        if kind is int:
            return (
                value
                if value.bit_length() < _NUMERIC_MAX_INT_BITS
                else finite_or_allowed(Decimal(value))
            )
        if value is None:
            return value
        if kind is float:
            return finite_or_allowed(
                Decimal(repr(value)) if math.isfinite(value) else Decimal(value)
            )
        if kind is str:
            number = _numeric_text(value)
            if number is not None:
                return finite_or_allowed(number)
            special = _NON_FINITE_TEXT.get(value.strip().lower())
            return UNFIT if special is None else finite_or_allowed(Decimal(special))
        return UNFIT

    return cast_number


def cast_boolean(value: Any) -> Any:
    """JSON booleans and the strings "true" and "false"."""
    if type(value) is bool or value is None:
        return value
    if value == "true":
        return True
    if value == "false":
        return False
    return UNFIT


def cast_object(value: Any) -> Any:
    """Only JSON objects."""
    if type(value) is dict:
        return json_text(value)
    return None if value is None else UNFIT


def cast_array(value: Any) -> Any:
    """Only JSON arrays."""
    if type(value) is list:
        return json_text(value)
    return None if value is None else UNFIT


def cast_jsonb(value: Any) -> Any:
    """Any JSON value."""
    return None if value is None else json_text(value)


def _round_fraction(text: str, parsed: Any) -> Any:
    """Python keeps six fractional digits and drops the rest; round them instead."""
    match = _LONG_FRACTION.search(text)
    if match is not None and match.group(1)[6] >= "5":
        if isinstance(parsed, time):
            moment = datetime.combine(date(2000, 1, 1), parsed) + timedelta(microseconds=1)
            if moment.day != 1:
                return UNFIT
            return moment.timetz()
        return parsed + timedelta(microseconds=1)
    return parsed


#: Date-times PostgreSQL reads exactly as Python does: valid ones are sent as received, which
#: spares formatting them again.
_PLAIN_DATETIME = re.compile(
    r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:\.\d{1,6})?(?:Z|[+-]\d\d(?::?\d\d)?)?"
)
_PLAIN_DATE = re.compile(r"\d{4}-\d\d-\d\d")


def _parse_datetime(value: Any) -> Any:
    if type(value) is not str:
        return UNFIT
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return UNFIT
    if _PLAIN_DATETIME.fullmatch(value):
        return value
    if "." in value or "," in value:
        try:
            parsed = _round_fraction(value, parsed)
        except OverflowError:
            return UNFIT
    return parsed


def _utc_if_naive(parsed: Any) -> Any:
    """A parsed date-time or time without offset means UTC. Text is left as it is: without an
    offset PostgreSQL reads it in the session's time zone, which is UTC."""
    if parsed is UNFIT or type(parsed) is str or parsed.tzinfo is not None:
        return parsed
    return parsed.replace(tzinfo=timezone.utc)


def _offset_dropped(parsed: Any) -> Any:
    """A parsed date-time or time keeps its wall clock and loses its offset. Text is left as it
    is: PostgreSQL ignores the offset of text read as TIMESTAMP."""
    if parsed is UNFIT or type(parsed) is str or parsed.tzinfo is None:
        return parsed
    return parsed.replace(tzinfo=None)


def cast_timestamptz(value: Any) -> Any:
    """ISO 8601 date-times; a string without offset means UTC."""
    return None if value is None else _utc_if_naive(_parse_datetime(value))


def cast_timestamp(value: Any) -> Any:
    """ISO 8601 date-times with any offset dropped."""
    return None if value is None else _offset_dropped(_parse_datetime(value))


def _parse_time(value: Any) -> Any:
    if type(value) is not str:
        return UNFIT
    try:
        parsed = time.fromisoformat(value)
    except ValueError:
        return UNFIT
    return _round_fraction(value, parsed) if "." in value or "," in value else parsed


def cast_timetz(value: Any) -> Any:
    """ISO 8601 times; a time without offset means UTC."""
    return None if value is None else _utc_if_naive(_parse_time(value))


def cast_time(value: Any) -> Any:
    """ISO 8601 times with any offset dropped."""
    return None if value is None else _offset_dropped(_parse_time(value))


def cast_date(value: Any) -> Any:
    """ISO 8601 calendar dates."""
    if value is None:
        return None
    if type(value) is not str:
        return UNFIT
    try:
        parsed = date.fromisoformat(value)
    except ValueError:
        return UNFIT
    return value if _PLAIN_DATE.fullmatch(value) else parsed


def cast_for(column: ColumnType, *, non_finite_numbers: bool) -> Cast:
    """The cast that turns JSON values into values of `column`."""
    casts: dict[ColumnType, Cast] = {
        STRING: cast_string,
        NUMBER: make_cast_number(non_finite_numbers),
        INTEGER: cast_integer,
        BOOLEAN: cast_boolean,
        OBJECT: cast_object,
        ARRAY: cast_array,
        JSONB: cast_jsonb,
        TIMESTAMPTZ: cast_timestamptz,
        TIMESTAMP: cast_timestamp,
        TIMETZ: cast_timetz,
        TIME: cast_time,
        DATE: cast_date,
    }
    return casts[column]


NULLED = {"change": "NULLED", "reason": "DESTINATION_TYPECAST_ERROR"}


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
SHORT_LINE = 8000
_SHORT_NUMBER = (
    "v{i} is None or (short and (type(v{i}) is int"
    " or (type(v{i}) is Decimal and -8000 < v{i}.adjusted() < 8000)))"
)

#: Column types whose values a decoded line can hand over as their JSON text (`msgspec.Raw`),
#: with the first character the column takes (None: any JSON value). A NUMBER takes the text
#: of a JSON number as it is: PostgreSQL reads it exactly, as Decimal would.
JSON_TEXT_COLUMNS: dict[ColumnType, str | None] = {
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
        if json_texts is not None and i in json_texts and column in JSON_TEXT_COLUMNS:
            lines.append(f"    if v{i} is not None:")
            lines.append(f"        v{i} = text(v{i}, 'utf-8')")
            first = JSON_TEXT_COLUMNS[column]
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


class RowCaster:
    """Casts records into final-table rows: the property columns in table order.

    `plan` gives, per column, the property name, the cast and the column type (which lets the
    common values skip the cast call). `row()` returns the values and the `_airbyte_meta`
    changes for the values that did not fit; `row_of_values()` does the same for a record
    already decoded into its values (`json_texts` names the columns that arrive as JSON text).
    """

    def __init__(
        self,
        plan: list[tuple[str, Cast, ColumnType | None]],
        json_texts: frozenset[int] = frozenset(),
    ) -> None:
        self.names = [name for name, _, _ in plan]
        self._row = _compile_row(plan)
        self._values_row = _compile_row(plan, json_texts)

    def _changes(self, values: list[Any], bad: bool) -> tuple[list[Any], list[dict[str, str]]]:
        """NULL for each value that did not fit (UNFIT), and the change that records it."""
        if not bad:
            return values, []
        changes = []
        for index, name in enumerate(self.names):
            if values[index] is UNFIT:
                values[index] = None
                changes.append({"field": name, **NULLED})
        return values, changes

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
        return self._changes(*self._values_row(values, short))
