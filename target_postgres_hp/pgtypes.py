"""The PostgreSQL column types of final tables (SPEC §4.3, §4.4, §7), in the spirit of dlt's
`PostgresTypeMapper`: one record per type holds everything the target knows of it, and the
functions below answer every question about types from those records alone.

A record says which JSON-schema spellings ask for the type, its SQL, how PostgreSQL's catalog
spells it in an existing table (with the value standing for NULL in a key index there), the
cast of JSON values into it, the older types a column of it widens from (with the `USING`
conversion), and, for the row function (`casting.RowCaster`), which values it takes as they
are without calling the cast.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Annotated, Any, Union

import msgspec
from psycopg.sql import SQL

from target_postgres_hp import casts
from target_postgres_hp.casts import PLAIN_DATETIME, Cast

#: A JSON-schema spelling of a property: (type, format, airbyte_type), None for "any".
SchemaSpelling = tuple[str, str | None, str | None]


@dataclass(frozen=True)
class PlainText:
    """Text PostgreSQL reads exactly as Python does: a string of this shape is sent as it is
    once `parse` accepts it (what the cast would do, without its calls)."""

    parse: Callable[[str], object]
    #: The layouts the text may have (`casts.layout`: its digits as 0), each with where the
    #: hours of its offset are (0: none; PostgreSQL refuses 16 and more), or, quicker to test,
    #: (length, index, character) when only one form `parse` accepts has that length and that
    #: character at that index.
    shape: Mapping[bytes, int] | frozenset[bytes] | tuple[int, int, str]


@dataclass(frozen=True)
class JsonText:
    """How a column takes a value that a decoded line hands over as its JSON text
    (`msgspec.Raw`, see `records.RecordFields`): text starting with one of `starts` is taken
    as it is. Other text is NULL when it is `null` and does not fit otherwise; for a `number`,
    it is decoded and cast, and so is a literal with an exponent or from a line longer than
    `casting.SHORT_LINE` (which may not fit NUMERIC)."""

    starts: frozenset[str]
    number: bool = False


@dataclass(frozen=True, eq=False)
class ColumnType:
    """A final-table column type: one record of all the target knows of it. Records compare
    by identity: there is one per type, below."""

    #: Its name in this module, which `widens_from` uses.
    name: str
    sql: str
    #: `format_type()` spelling of the column it creates.
    catalog: str
    cast: Cast = field(repr=False)
    #: The JSON-schema spellings that ask for it; the most specific one a property matches wins.
    schema: tuple[SchemaSpelling, ...] = field(default=(), repr=False)
    #: Rank in SPEC §4.3's order: a union of types takes its most general one.
    generality: int = field(default=0, repr=False)
    #: `format_type()` spellings (without modifiers) read as this type in an existing table,
    #: each with the value standing for NULL in a key index on servers before PostgreSQL 15,
    #: which have no NULLS NOT DISTINCT: the index holds `COALESCE(k, stand-in)` and
    #: `k IS NULL`, so two NULL components compare equal and a NULL never equals the stand-in.
    reads: tuple[tuple[str, SQL | None], ...] = field(default=(), repr=False)
    #: The cast on servers whose DECIMAL holds NaN and ±Infinity (PostgreSQL 14+), if other.
    cast_non_finite: Cast | None = field(default=None, repr=False)
    #: (name of a narrower type, the `USING` conversion of its values, `{}` being the column).
    widens_from: tuple[tuple[str, SQL], ...] = field(default=(), repr=False)
    #: The `USING` conversion of any other type's values but JSONB's, if a column of any
    #: type widens to this one.
    widens_from_any: SQL | None = field(default=None, repr=False)
    #: The Python type whose values the column takes as they are, without calling the cast
    #: (as it takes None, which is NULL)...
    keeps: type | None = field(default=None, repr=False)
    #: ...when they are within this range.
    keeps_range: tuple[int, int] | None = field(default=None, repr=False)
    plain_text: PlainText | None = field(default=None, repr=False)
    json_text: JsonText | None = field(default=None, repr=False)
    #: The msgspec type that decodes exactly the JSON values the column keeps as they are
    #: (`keeps`, `keeps_range`), so that the decoder, not Python, tests them (see
    #: `records.RecordFields`); None when no msgspec type does.
    decodes_as: Any = field(default=None, repr=False)
    #: The msgspec type the fast way decodes the column's values into when they are not
    #: checked (None: any); a record holding another value there is read the dict way
    #: (`decode.RecordDecoder.from_text`).
    reads_as: Any = field(default=None, repr=False)


_ZERO = SQL("0")
_TO_JSONB = SQL("to_jsonb({})")
_DATE_TIME = PlainText(datetime.fromisoformat, PLAIN_DATETIME)

STRING = ColumnType(
    "string",
    "VARCHAR",
    "character varying",
    casts.cast_string,
    schema=(("string", None, None),),
    generality=4,
    # Key indexes made before `character` had a stand-in keep their plain column term.
    reads=(("character varying", SQL("''")), ("text", SQL("''")), ("character", None)),
    # Any scalar widens to its JSON text: `5`, `true`, `2024-01-01T10:00:00+00:00`.
    widens_from_any=SQL("to_jsonb({}) #>> '{{}}'"),
    keeps=str,
    decodes_as=str,
    # Not a number with a fraction or an exponent, whose text a Decimal does not keep
    # (`1e5`): the dict way reads it as written (`rawdata.SpelledNumber`).
    reads_as=Union[str, int, bool, None, dict, list],  # noqa: UP007
)
NUMBER = ColumnType(
    "number",
    "DECIMAL",
    "numeric",
    casts.make_cast_number(non_finite=False),
    schema=(("number", None, None),),
    generality=2,
    reads=(("numeric", _ZERO), ("double precision", _ZERO), ("real", _ZERO)),
    cast_non_finite=casts.make_cast_number(non_finite=True),
    widens_from=(("integer", SQL("{}::numeric")),),
    keeps=int,
    # PostgreSQL reads the text of a JSON number exactly, as Decimal would.
    json_text=JsonText(starts=frozenset("-0123456789"), number=True),
)
INTEGER = ColumnType(
    "integer",
    "BIGINT",
    "bigint",
    casts.cast_integer,
    schema=(("integer", None, None), ("number", None, "integer")),
    generality=1,
    reads=(("bigint", _ZERO), ("integer", _ZERO), ("smallint", _ZERO)),
    keeps=int,
    keeps_range=(casts.BIGINT_MIN, casts.BIGINT_MAX),
    # A JSON integer within BIGINT: msgspec refuses 1.0, "1" and integers out of range.
    decodes_as=Annotated[int, msgspec.Meta(ge=casts.BIGINT_MIN, le=casts.BIGINT_MAX)],
)
BOOLEAN = ColumnType(
    "boolean",
    "BOOLEAN",
    "boolean",
    casts.cast_boolean,
    schema=(("boolean", None, None),),
    generality=0,
    reads=(("boolean", SQL("false")),),
    keeps=bool,
    decodes_as=bool,
)
#: The strict JSONB of an `object` property (an existing jsonb column reads as `JSONB`).
OBJECT = ColumnType(
    "object",
    "JSONB",
    "jsonb",
    casts.cast_object,
    schema=(("object", None, None),),
    generality=5,
    widens_from_any=_TO_JSONB,
    json_text=JsonText(starts=frozenset("{")),
)
ARRAY = ColumnType(
    "array",
    "JSONB",
    "jsonb",
    casts.cast_array,
    schema=(("array", None, None),),
    generality=6,
    widens_from_any=_TO_JSONB,
    json_text=JsonText(starts=frozenset("[")),
)
#: JSONB that receives any JSON value: unions including object/array, `{}`, unknown types.
JSONB = ColumnType(
    "jsonb",
    "JSONB",
    "jsonb",
    casts.cast_jsonb,
    generality=7,
    reads=(("jsonb", SQL("'null'::jsonb")), ("json", None)),
    widens_from_any=_TO_JSONB,
    # The first characters of every JSON value but null (which is NULL).
    json_text=JsonText(starts=frozenset('{["-0123456789tf')),
)
TIMESTAMPTZ = ColumnType(
    "timestamptz",
    "TIMESTAMP WITH TIME ZONE",
    "timestamp with time zone",
    casts.cast_timestamptz,
    schema=(("string", "date-time", None),),
    generality=3,
    reads=(("timestamp with time zone", SQL("'-infinity'::timestamptz")),),
    widens_from=(
        ("date", SQL("{}::timestamp AT TIME ZONE 'UTC'")),
        ("timestamp", SQL("{} AT TIME ZONE 'UTC'")),
    ),
    plain_text=_DATE_TIME,
)
TIMESTAMP = ColumnType(
    "timestamp",
    "TIMESTAMP",
    "timestamp without time zone",
    casts.cast_timestamp,
    schema=(("string", "date-time", "timestamp_without_timezone"),),
    generality=3,
    reads=(("timestamp without time zone", SQL("'-infinity'::timestamp")),),
    widens_from=(("date", SQL("{}::timestamp")),),
    plain_text=_DATE_TIME,
)
TIMETZ = ColumnType(
    "timetz",
    "TIME WITH TIME ZONE",
    "time with time zone",
    casts.cast_timetz,
    schema=(("string", "time", "time_with_timezone"),),
    generality=3,
    reads=(("time with time zone", SQL("'00:00+00'::timetz")),),
    widens_from=(("time", SQL("{}::timetz")),),
)
TIME = ColumnType(
    "time",
    "TIME",
    "time without time zone",
    casts.cast_time,
    schema=(("string", "time", None),),
    generality=3,
    reads=(("time without time zone", SQL("'00:00'::time")),),
)
DATE = ColumnType(
    "date",
    "DATE",
    "date",
    casts.cast_date,
    schema=(("string", "date", None),),
    generality=3,
    reads=(("date", SQL("'-infinity'::date")),),
    # Ten characters with a dash at 7 that `date.fromisoformat` accepts can only be YYYY-MM-DD
    # (`PLAIN_DATE`, which `cast_date` tests): it refuses non-ASCII digits, and a week date has
    # its dash at 8.
    plain_text=PlainText(date.fromisoformat, (10, 7, "-")),
)

#: Every column type.
TYPES: tuple[ColumnType, ...] = (STRING, NUMBER, INTEGER, BOOLEAN, OBJECT, ARRAY, JSONB)
TYPES += (TIMESTAMPTZ, TIMESTAMP, TIMETZ, TIME, DATE)

#: The records by the catalog spellings they read (an index of `reads`, not a second table).
_READS = {spelling: (kind, stand_in) for kind in TYPES for spelling, stand_in in kind.reads}

#: Column types whose values a decoded line may hand over as their JSON text.
JSON_TEXT_COLUMNS = frozenset(kind for kind in TYPES if kind.json_text is not None)


def _schema_type(name: Any, schema: Mapping[str, Any]) -> ColumnType:
    """The type a JSON-schema type name of a property asks for: the record whose spelling it
    matches most specifically, JSONB when no record has it."""
    fmt, airbyte_type = schema.get("format"), schema.get("airbyte_type")
    best, best_score = JSONB, -1
    for kind in TYPES:
        for kind_name, kind_format, kind_airbyte_type in kind.schema:
            if (
                kind_name == name
                and kind_format in (None, fmt)
                and kind_airbyte_type in (None, airbyte_type)
            ):
                score = (kind_format is not None) + (kind_airbyte_type is not None)
                if score > best_score:
                    best, best_score = kind, score
    return best


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
    for name in declared if isinstance(declared, list) else [declared]:
        typed = True
        if name != "null":
            atoms.add(_schema_type(name, schema))
    return atoms, typed


def column_type(schema: Any) -> ColumnType:
    """The column type of one top-level property (SPEC §4.3)."""
    atoms, typed = _atoms(schema)
    if not typed or not atoms:
        return JSONB
    if len(atoms) == 1:
        return next(iter(atoms))
    best = max(atoms, key=lambda atom: atom.generality)
    if best.sql == JSONB.sql:
        # A union with an object or an array takes any JSON value.
        return JSONB
    if sum(atom.generality == best.generality for atom in atoms) > 1:
        # Two different date/time formats share no narrower type than text.
        return STRING
    return best


def catalog_base(catalog_type: str) -> str:
    """A `format_type()` spelling without its modifiers: `character varying(20)` → the type."""
    return re.sub(r"\(.*\)", "", catalog_type).strip()


def catalog_column_type(catalog_type: str) -> ColumnType | None:
    """The column type a `format_type()` spelling stands for, if this target knows it."""
    known = _READS.get(catalog_base(catalog_type))
    return known[0] if known else None


def null_stand_in(catalog_type: str) -> str | None:
    """The SQL of the value standing for NULL in a pre-15 key index on a column of this type."""
    known = _READS.get(catalog_base(catalog_type))
    return known[1].as_string() if known and known[1] is not None else None


def effective_type(wanted: ColumnType, catalog_type: str | None) -> ColumnType:
    """The type values are cast to: the column's actual type in the table, read through the
    property's own type when both agree (so an `object` column stays strict)."""
    if catalog_type is None or catalog_base(catalog_type) == wanted.catalog:
        return wanted
    return catalog_column_type(catalog_type) or STRING


def widening(catalog_type: str, wanted: ColumnType) -> tuple[ColumnType, SQL] | None:
    """The type an existing column must change to so it can hold `wanted` values, with the
    conversion of its current values (`{}` is the column); None when it can already hold them
    or when `wanted` is narrower or incompatible (the column is then kept). A JSONB column,
    which holds anything, is always kept."""
    existing = catalog_column_type(catalog_type)
    if existing is None or existing.catalog in (wanted.catalog, JSONB.catalog):
        return None
    using = wanted.widens_from_any or dict(wanted.widens_from).get(existing.name)
    return (wanted, using) if using is not None else None


def cast_for(column: ColumnType, *, non_finite_numbers: bool) -> Cast:
    """The cast that turns JSON values into values of `column`; `non_finite_numbers` says
    whether the server's DECIMAL holds NaN and ±Infinity (PostgreSQL 14 and later)."""
    if non_finite_numbers and column.cast_non_finite is not None:
        return column.cast_non_finite
    return column.cast
