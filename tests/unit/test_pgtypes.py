"""The column type records (pgtypes, SPEC §4.3, §7): which type a property schema asks for, how
an existing table's catalog spellings read, their NULL stand-ins and widenings. Where the
records replaced code, the answers are compared with the code they replaced (marked below as
pre-redesign references)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg import sql

from target_postgres_hp.casting import JSON_TEXT_COLUMNS
from target_postgres_hp.casts import UNFIT
from target_postgres_hp.pgtypes import (
    TYPES,
    ColumnType,
    cast_for,
    catalog_base,
    catalog_column_type,
    column_type,
    effective_type,
    null_stand_in,
    widening,
)

STRING, NUMBER, INTEGER, BOOLEAN, OBJECT, ARRAY, JSONB = TYPES[:7]
TIMESTAMPTZ, TIMESTAMP, TIMETZ, TIME, DATE = TYPES[7:]

# --- the records -------------------------------------------------------------------------------


def test_no_catalog_spelling_is_read_by_two_types() -> None:
    spellings = [spelling for kind in TYPES for spelling, _ in kind.reads]
    assert len(spellings) == len(set(spellings))


@pytest.mark.parametrize("kind", TYPES, ids=lambda kind: kind.name)
def test_a_column_created_for_a_type_reads_back_as_it(kind: ColumnType) -> None:
    assert catalog_column_type(kind.catalog) is (JSONB if kind.sql == "JSONB" else kind)
    assert effective_type(kind, kind.catalog) is kind
    assert widening(kind.catalog, kind) is None


def test_json_text_columns() -> None:
    assert {NUMBER, OBJECT, ARRAY, JSONB} == JSON_TEXT_COLUMNS


def test_only_numbers_cast_differently_where_decimal_holds_non_finite_values() -> None:
    for kind in TYPES:
        same = cast_for(kind, non_finite_numbers=True) is cast_for(kind, non_finite_numbers=False)
        assert same is (kind is not NUMBER)
    assert cast_for(NUMBER, non_finite_numbers=False)("NaN") is UNFIT
    assert str(cast_for(NUMBER, non_finite_numbers=True)("NaN")) == "NaN"


# --- PRE-REDESIGN REFERENCE: the catalog table and the widenings as they were (3f2dfce) ------

#: catalog spelling: (column type, NULL stand-in)
OLD_CATALOG_TYPES: dict[str, tuple[ColumnType, str | None]] = {
    "character varying": (STRING, "''"),
    "text": (STRING, "''"),
    "character": (STRING, None),
    "numeric": (NUMBER, "0"),
    "double precision": (NUMBER, "0"),
    "real": (NUMBER, "0"),
    "bigint": (INTEGER, "0"),
    "integer": (INTEGER, "0"),
    "smallint": (INTEGER, "0"),
    "boolean": (BOOLEAN, "false"),
    "jsonb": (JSONB, "'null'::jsonb"),
    "json": (JSONB, None),
    "timestamp with time zone": (TIMESTAMPTZ, "'-infinity'::timestamptz"),
    "timestamp without time zone": (TIMESTAMP, "'-infinity'::timestamp"),
    "time with time zone": (TIMETZ, "'00:00+00'::timetz"),
    "time without time zone": (TIME, "'00:00'::time"),
    "date": (DATE, "'-infinity'::date"),
}
OLD_WIDENS_FROM: dict[ColumnType, dict[str, str]] = {
    NUMBER: {"integer": "{}::numeric"},
    TIMESTAMPTZ: {"date": "{}::timestamp AT TIME ZONE 'UTC'", "timestamp": "{} AT TIME ZONE 'UTC'"},
    TIMESTAMP: {"date": "{}::timestamp"},
    TIMETZ: {"time": "{}::timetz"},
}


def old_widening(catalog_type: str, wanted: ColumnType) -> tuple[ColumnType, str] | None:
    known = OLD_CATALOG_TYPES.get(catalog_base(catalog_type))
    existing = known[0] if known else None
    if existing is None or existing.catalog == wanted.catalog:
        return None
    if wanted.catalog == "jsonb":
        return (wanted, "to_jsonb({})") if existing.catalog != "jsonb" else None
    if existing.catalog == "jsonb":
        return None
    if wanted is STRING:
        return (STRING, "to_jsonb({}) #>> '{{}}'")
    using = OLD_WIDENS_FROM.get(wanted, {}).get(existing.name)
    return (wanted, using) if using else None


# --- end of the reference ----------------------------------------------------------------------

MODIFIED = ["character varying(20)", "numeric(12,2)", "timestamp(3) with time zone"]
UNKNOWN = ["bit", "money", "integer[]"]
SPELLINGS = [*OLD_CATALOG_TYPES, *MODIFIED, *UNKNOWN]


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_catalog_spellings_read_as_before(spelling: str) -> None:
    known = OLD_CATALOG_TYPES.get(catalog_base(spelling))
    assert catalog_column_type(spelling) is (known[0] if known else None)
    assert null_stand_in(spelling) == (known[1] if known else None)
    for wanted in TYPES:
        assert effective_type(wanted, spelling) is (
            wanted if catalog_base(spelling) == wanted.catalog else known[0] if known else STRING
        )


@pytest.mark.parametrize("spelling", SPELLINGS)
@pytest.mark.parametrize("wanted", TYPES, ids=lambda kind: kind.name)
def test_widenings_are_as_before(spelling: str, wanted: ColumnType) -> None:
    change = widening(spelling, wanted)
    text = (change[0], change[1].as_string()) if change is not None else None
    assert text == old_widening(spelling, wanted)


def test_a_widening_composes_with_the_column_identifier() -> None:
    change = widening("timestamp without time zone", TIMESTAMPTZ)
    assert change is not None
    using = change[1].format(sql.Identifier('Sent "at"'))
    assert using.as_string() == '"Sent ""at""" AT TIME ZONE \'UTC\''
    text = widening("bigint", STRING)
    assert text is not None
    assert text[1].format(sql.Identifier("n")).as_string() == "to_jsonb(\"n\") #>> '{}'"


# --- PRE-REDESIGN REFERENCE: the schema rules as they were (3f2dfce) ---------------------------

OLD_GENERALITY = {ARRAY: 6, OBJECT: 5, STRING: 4, NUMBER: 2, INTEGER: 1, BOOLEAN: 0}
OLD_GENERALITY.update(dict.fromkeys((TIMESTAMPTZ, TIMESTAMP, TIMETZ, TIME, DATE), 3))
OLD_DATETIME_TYPES = {TIMESTAMPTZ, TIMESTAMP, TIMETZ, TIME, DATE}


def old_string_atom(schema: Mapping[str, Any]) -> ColumnType:
    fmt = schema.get("format")
    airbyte_type = schema.get("airbyte_type")
    if fmt == "date-time":
        return TIMESTAMP if airbyte_type == "timestamp_without_timezone" else TIMESTAMPTZ
    if fmt == "time":
        return TIMETZ if airbyte_type == "time_with_timezone" else TIME
    if fmt == "date":
        return DATE
    return STRING


def old_atoms(schema: Mapping[str, Any]) -> set[ColumnType]:
    """The types of the names a schema declares (the body of `_atoms`'s loop over them; its
    anyOf and oneOf handling is unchanged)."""
    declared = schema["type"]
    simple = {"integer": INTEGER, "boolean": BOOLEAN, "object": OBJECT, "array": ARRAY}
    atoms = set()
    for name in declared if isinstance(declared, list) else [declared]:
        if name == "string":
            atoms.add(old_string_atom(schema))
        elif name == "number":
            atoms.add(INTEGER if schema.get("airbyte_type") == "integer" else NUMBER)
        elif name != "null":
            atoms.add(simple.get(name, JSONB) if isinstance(name, str) else JSONB)
    return atoms


def old_column_type(atoms: set[ColumnType]) -> ColumnType:
    """The type of a property allowing these types."""
    if not atoms or JSONB in atoms:
        return JSONB
    if len(atoms) == 1:
        return next(iter(atoms))
    best = max(atoms, key=lambda atom: OLD_GENERALITY[atom])
    if best in (ARRAY, OBJECT):
        return JSONB
    if best in OLD_DATETIME_TYPES and len(atoms & OLD_DATETIME_TYPES) > 1:
        return STRING
    return best


# --- end of the reference ----------------------------------------------------------------------

NAMES = st.sampled_from(["string", "number", "integer", "boolean", "object", "array", "null", "x"])
FORMATS = st.sampled_from([None, "date-time", "date", "time", "email", ["date"]])
AIRBYTE_TYPES = st.sampled_from(
    [
        None,
        "integer",
        "timestamp_with_timezone",
        "timestamp_without_timezone",
        "time_with_timezone",
        "time_without_timezone",
    ]
)
#: A schema declaring types, with a format and an airbyte_type.
TYPED = st.fixed_dictionaries(
    {
        "type": NAMES | st.lists(NAMES, min_size=1, max_size=3),
        "format": FORMATS,
        "airbyte_type": AIRBYTE_TYPES,
    }
)


@settings(max_examples=500)
@given(st.lists(TYPED, min_size=1, max_size=3))
def test_column_type_is_as_before(branches: list[dict[str, Any]]) -> None:
    """Of a schema, or of a union of schemas (`anyOf`)."""
    schema = branches[0] if len(branches) == 1 else {"anyOf": branches}
    assert column_type(schema) is old_column_type(set().union(*map(old_atoms, branches)))
