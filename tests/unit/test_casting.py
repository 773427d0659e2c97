"""Column types and value casts (SPEC §4.3, §4.4)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from target_postgres_hp.casting import (
    ARRAY,
    BOOLEAN,
    DATE,
    INTEGER,
    JSONB,
    NUMBER,
    OBJECT,
    STRING,
    TIME,
    TIMESTAMP,
    TIMESTAMPTZ,
    TIMETZ,
    UNFIT,
    ColumnType,
    RowCaster,
    cast_array,
    cast_boolean,
    cast_date,
    cast_for,
    cast_integer,
    cast_jsonb,
    cast_object,
    cast_string,
    cast_time,
    cast_timestamp,
    cast_timestamptz,
    cast_timetz,
    column_type,
    effective_type,
    json_text,
    make_cast_number,
)
from target_postgres_hp.casts import PLAIN_DATETIME, layout

UTC = timezone.utc
PLUS_0530 = timezone(timedelta(hours=5, minutes=30))
MINUS_03 = timezone(timedelta(hours=-3))

cast_number = make_cast_number(False)
cast_number_non_finite = make_cast_number(True)

ALL_CASTS = [
    cast_string,
    cast_number,
    cast_number_non_finite,
    cast_integer,
    cast_boolean,
    cast_object,
    cast_array,
    cast_jsonb,
    cast_timestamptz,
    cast_timestamp,
    cast_timetz,
    cast_time,
    cast_date,
]


def _reject_constant(token: str) -> Any:
    raise ValueError(f"{token} is not valid JSON")


def strict_json(text: str) -> Any:
    """Parse `text` as strict JSON (no NaN/Infinity tokens), numbers with a fraction as
    Decimal."""
    return json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)


def instant(result: Any) -> datetime:
    """The moment a TIMESTAMPTZ cast result stands for. A string is sent as received and read by
    PostgreSQL in the session's time zone (UTC) when it has no offset."""
    assert result is not UNFIT
    assert result is not None
    if isinstance(result, str):
        parsed = datetime.fromisoformat(result)
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
    assert isinstance(result, datetime)
    assert result.tzinfo is not None
    return result


def wall_clock(result: Any) -> datetime:
    """The value a TIMESTAMP cast result stands for. A string is sent as received, and
    PostgreSQL ignores the offset of text read as TIMESTAMP."""
    assert result is not UNFIT
    assert result is not None
    if isinstance(result, str):
        return datetime.fromisoformat(result).replace(tzinfo=None)
    assert isinstance(result, datetime)
    assert result.tzinfo is None
    return result


def as_date(result: Any) -> date:
    """The date a DATE cast result stands for (a string is sent as received)."""
    assert result is not UNFIT
    assert result is not None
    if isinstance(result, str):
        return date.fromisoformat(result)
    assert type(result) is date
    return result


# --- column types (SPEC §4.3) ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "expected", "sql"),
    [
        ({"type": "string"}, STRING, "VARCHAR"),
        ({"type": "number"}, NUMBER, "DECIMAL"),
        ({"type": "integer"}, INTEGER, "BIGINT"),
        ({"type": "boolean"}, BOOLEAN, "BOOLEAN"),
        ({"type": "object"}, OBJECT, "JSONB"),
        ({"type": "object", "properties": {"a": {"type": "integer"}}}, OBJECT, "JSONB"),
        ({"type": "array"}, ARRAY, "JSONB"),
        ({"type": "array", "items": {"type": "string"}}, ARRAY, "JSONB"),
        ({"type": "string", "format": "date-time"}, TIMESTAMPTZ, "TIMESTAMP WITH TIME ZONE"),
        (
            {"type": "string", "format": "date-time", "airbyte_type": "timestamp_with_timezone"},
            TIMESTAMPTZ,
            "TIMESTAMP WITH TIME ZONE",
        ),
        (
            {
                "type": "string",
                "format": "date-time",
                "airbyte_type": "timestamp_without_timezone",
            },
            TIMESTAMP,
            "TIMESTAMP",
        ),
        (
            {"type": "string", "format": "time", "airbyte_type": "time_with_timezone"},
            TIMETZ,
            "TIME WITH TIME ZONE",
        ),
        (
            {"type": "string", "format": "time", "airbyte_type": "time_without_timezone"},
            TIME,
            "TIME",
        ),
        ({"type": "string", "format": "time"}, TIME, "TIME"),
        ({"type": "string", "format": "date"}, DATE, "DATE"),
        ({"type": "string", "format": "email"}, STRING, "VARCHAR"),
        ({"type": "number", "airbyte_type": "integer"}, INTEGER, "BIGINT"),
    ],
)
def test_column_type_of_single_types(
    schema: dict[str, Any], expected: ColumnType, sql: str
) -> None:
    assert column_type(schema) == expected
    assert column_type(schema).sql == sql


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({"type": ["null", "string"]}, STRING),
        ({"type": ["string", "null"]}, STRING),
        ({"type": ["null", "number"]}, NUMBER),
        ({"type": ["null", "integer"]}, INTEGER),
        ({"type": ["null", "boolean"]}, BOOLEAN),
        ({"type": ["null", "object"]}, OBJECT),
        ({"type": ["null", "array"]}, ARRAY),
        ({"type": ["null", "string"], "format": "date-time"}, TIMESTAMPTZ),
        (
            {
                "type": ["null", "string"],
                "format": "date-time",
                "airbyte_type": "timestamp_without_timezone",
            },
            TIMESTAMP,
        ),
        ({"type": ["null", "string"], "format": "date"}, DATE),
        ({"anyOf": [{"type": "null"}, {"type": "integer"}]}, INTEGER),
        ({"anyOf": [{"type": "integer"}, {"type": "null"}]}, INTEGER),
        ({"anyOf": [{"type": "null"}, {"type": "object"}]}, OBJECT),
        ({"anyOf": [{"type": "null"}, {"type": "array", "items": {}}]}, ARRAY),
        ({"anyOf": [{"type": "null"}, {"type": "string", "format": "date"}]}, DATE),
        (
            {
                "anyOf": [
                    {"type": "null"},
                    {"type": "string", "format": "time", "airbyte_type": "time_with_timezone"},
                ]
            },
            TIMETZ,
        ),
    ],
)
def test_nullable_types_keep_their_type(schema: dict[str, Any], expected: ColumnType) -> None:
    assert column_type(schema) == expected


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({"type": ["integer", "boolean"]}, INTEGER),
        ({"type": ["boolean", "integer"]}, INTEGER),
        ({"type": ["number", "integer"]}, NUMBER),
        ({"type": ["boolean", "number"]}, NUMBER),
        ({"type": ["null", "number", "integer", "boolean"]}, NUMBER),
        ({"type": ["string", "number"]}, STRING),
        ({"type": ["integer", "string", "boolean"]}, STRING),
        ({"type": ["null", "string", "integer"]}, STRING),
        ({"anyOf": [{"type": "string", "format": "date-time"}, {"type": "number"}]}, TIMESTAMPTZ),
        ({"anyOf": [{"type": "integer"}, {"type": "string", "format": "date"}]}, DATE),
        ({"anyOf": [{"type": "string", "format": "date"}, {"type": "string"}]}, STRING),
        ({"anyOf": [{"type": "string"}, {"type": "string", "format": "date-time"}]}, STRING),
        # unions holding an object or array become the any-JSON JSONB type
        ({"type": ["object", "string"]}, JSONB),
        ({"type": ["array", "object"]}, JSONB),
        ({"type": ["null", "array", "integer"]}, JSONB),
        ({"type": ["boolean", "object"]}, JSONB),
        ({"anyOf": [{"type": "object"}, {"type": "array"}]}, JSONB),
        ({"anyOf": [{"type": "null"}, {"type": "string"}, {"type": "object"}]}, JSONB),
    ],
)
def test_several_types_take_the_most_general(schema: dict[str, Any], expected: ColumnType) -> None:
    assert column_type(schema) == expected


def test_union_with_object_or_array_is_not_the_strict_object_type() -> None:
    union = column_type({"type": ["object", "string"]})
    assert union.sql == "JSONB"
    assert union != OBJECT
    assert union != ARRAY
    # such a column takes any JSON value, where an object column would null a string
    assert cast_for(union, non_finite_numbers=False)("text") == '"text"'


@pytest.mark.parametrize(
    "schema",
    [
        {},
        {"description": "anything"},
        {"type": "foo"},
        {"type": ["null", "foo"]},
        {"type": ["string", "mystery"]},
        {"anyOf": [{"type": "null"}, {}]},
        {"anyOf": [{"type": "string"}, {"description": "untyped"}]},
    ],
)
def test_no_type_empty_or_unknown_is_jsonb(schema: dict[str, Any]) -> None:
    assert column_type(schema) == JSONB
    assert column_type(schema).sql == "JSONB"


def test_column_types_are_distinct_sql() -> None:
    assert STRING.sql != NUMBER.sql
    assert INTEGER.sql == "BIGINT"
    assert {OBJECT.sql, ARRAY.sql, JSONB.sql} == {"JSONB"}


# --- effective type ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wanted", "catalog", "expected"),
    [
        (INTEGER, None, INTEGER),
        (OBJECT, None, OBJECT),
        (INTEGER, "character varying", STRING),
        (INTEGER, "character varying(255)", STRING),
        (INTEGER, "text", STRING),
        (OBJECT, "jsonb", OBJECT),
        (ARRAY, "jsonb", ARRAY),
        (JSONB, "jsonb", JSONB),
        (STRING, "jsonb", JSONB),
        (INTEGER, "numeric", NUMBER),
        (NUMBER, "numeric(12,2)", NUMBER),
        (STRING, "bigint", INTEGER),
        (NUMBER, "boolean", BOOLEAN),
        (TIMESTAMPTZ, "timestamp without time zone", TIMESTAMP),
        (STRING, "timestamp(3) with time zone", TIMESTAMPTZ),
        (TIMESTAMPTZ, "timestamp with time zone", TIMESTAMPTZ),
        (TIME, "time with time zone", TIMETZ),
        (STRING, "date", DATE),
    ],
)
def test_existing_column_type_wins(
    wanted: ColumnType, catalog: str | None, expected: ColumnType
) -> None:
    assert effective_type(wanted, catalog) == expected


def test_effective_type_decides_the_cast() -> None:
    # an INTEGER property whose existing column is VARCHAR takes any value as text
    cast = cast_for(effective_type(INTEGER, "character varying"), non_finite_numbers=False)
    assert cast("abc") == "abc"
    assert cast(5) == "5"
    # an OBJECT property over a jsonb column stays strict
    strict = cast_for(effective_type(OBJECT, "jsonb"), non_finite_numbers=False)
    assert strict([1]) is UNFIT
    assert strict_json(strict({"a": 1})) == {"a": 1}


# --- string ------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "abc", "42", "true", "名前 😀", "null", '{"a": 1}'])
def test_string_keeps_strings(text: str) -> None:
    assert cast_string(text) == text


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (42, "42"),
        (-7, "-7"),
        (2**70, str(2**70)),
        (Decimal("1.50"), "1.50"),
        (Decimal("12345678901234567890.123"), "12345678901234567890.123"),
        (1.5, "1.5"),
        (True, "true"),
        (False, "false"),
    ],
)
def test_string_takes_scalars_as_json_text(value: Any, expected: str) -> None:
    assert cast_string(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        {"a": 1, "b": [True, None, "x"]},
        {},
        [],
        [1, "two", {"three": Decimal("3.25")}],
        {"nested": {"deep": [[]]}},
    ],
)
def test_string_takes_containers_as_json_text(value: Any) -> None:
    result = cast_string(value)
    assert isinstance(result, str)
    assert strict_json(result) == value


# --- number ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (42, 42),
        (-42, -42),
        (0, 0),
        (10**30, 10**30),
        (Decimal("1.5"), Decimal("1.5")),
        (Decimal("-0.001"), Decimal("-0.001")),
        (Decimal("1E+3"), Decimal("1000")),
        (1.1, Decimal("1.1")),
        (0.5, Decimal("0.5")),
        ("42", Decimal(42)),
        ("-0.5", Decimal("-0.5")),
        ("1e3", Decimal(1000)),
        ("1E-7", Decimal("0.0000001")),
    ],
)
def test_number_takes_numbers_and_numeric_strings(value: Any, expected: Decimal | int) -> None:
    result = cast_number(value)
    assert isinstance(result, (int, Decimal))
    assert not isinstance(result, bool)
    assert result == expected


@pytest.mark.parametrize(
    "text",
    [
        "12345678901234567890.123",
        "0.1000000000000000000000000000000000000001",
        "-98765432109876543210987654321098765432109876543210.000000000000000000001",
    ],
)
def test_number_is_exact(text: str) -> None:
    from_string = cast_number(text)
    assert isinstance(from_string, Decimal)
    assert str(from_string) == text
    from_decimal = cast_number(Decimal(text))
    assert str(from_decimal) == text


@pytest.mark.parametrize("value", ["abc", "", "1.2.3", "0x10", "12abc", True, False, [], {}, [1]])
def test_number_rejects_non_numbers(value: Any) -> None:
    assert cast_number(value) is UNFIT
    assert cast_number_non_finite(value) is UNFIT


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Decimal("NaN"), "NaN"),
        (float("nan"), "NaN"),
        ("NaN", "NaN"),
        (Decimal("Infinity"), "Infinity"),
        (float("inf"), "Infinity"),
        ("Infinity", "Infinity"),
        (Decimal("-Infinity"), "-Infinity"),
        (float("-inf"), "-Infinity"),
        ("-Infinity", "-Infinity"),
    ],
)
def test_non_finite_numbers_only_where_the_server_holds_them(value: Any, expected: str) -> None:
    assert cast_number(value) is UNFIT
    allowed = cast_number_non_finite(value)
    assert isinstance(allowed, Decimal)
    if expected == "NaN":
        assert allowed.is_nan()
    else:
        assert allowed == Decimal(expected)
    assert cast_for(NUMBER, non_finite_numbers=False)(value) is UNFIT
    assert cast_for(NUMBER, non_finite_numbers=True)(value) is not UNFIT


@pytest.mark.parametrize("text", ["1e200000", "-1e200000", "1e-20000", "0.5e-16384"])
def test_number_beyond_numeric_range_does_not_fit(text: str) -> None:
    """PostgreSQL's DECIMAL holds at most 131072 digits before the point and 16383 after;
    beyond that COPY fails ("value overflows numeric format"), so the value must become NULL
    plus a change instead of failing the load (SPEC §4.4)."""
    assert cast_number(text) is UNFIT
    assert cast_number(Decimal(text)) is UNFIT


@pytest.mark.parametrize("text", ["1e131071", "-1e131071", "1e-16383"])
def test_number_at_the_numeric_limits_fits(text: str) -> None:
    assert cast_number(text) == Decimal(text)


# --- integer -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (42, 42),
        (-42, -42),
        (0, 0),
        (2**63 - 1, 2**63 - 1),
        (-(2**63), -(2**63)),
        (42.0, 42),
        (-3.0, -3),
        (Decimal("42.0"), 42),
        (Decimal("1E+3"), 1000),
        (Decimal("1e3"), 1000),
        ("42", 42),
        ("-42", -42),
        ("42.0", 42),
        ("1e3", 1000),
        ("9223372036854775807", 2**63 - 1),
    ],
)
def test_integer_takes_integral_values(value: Any, expected: int) -> None:
    result = cast_integer(value)
    assert type(result) is int
    assert result == expected


@pytest.mark.parametrize(
    "value",
    [
        2**63,
        -(2**63) - 1,
        2**100,
        Decimal(2**63),
        str(2**63),
        str(-(2**63) - 1),
        42.5,
        Decimal("42.5"),
        "42.5",
        "abc",
        "",
        True,
        False,
        [1],
        {"a": 1},
        float("nan"),
        float("inf"),
        Decimal("NaN"),
        Decimal("-Infinity"),
        "NaN",
        "Infinity",
        Decimal("1e400"),
    ],
)
def test_integer_rejects_the_rest(value: Any) -> None:
    assert cast_integer(value) is UNFIT


def test_integer_rejects_huge_exponents_quickly() -> None:
    """A 12-character value such as "1e100000000" does not fit BIGINT: it must be rejected at
    once, not after building a hundred-million-digit integer (which stalls the load for
    hours)."""
    program = (
        "from decimal import Decimal\n"
        "from target_postgres_hp.casting import cast_integer, UNFIT\n"
        "assert cast_integer(Decimal('1e100000000')) is UNFIT\n"
        "assert cast_integer('1e100000000') is UNFIT\n"
        "assert cast_integer(Decimal('-1E+99999999')) is UNFIT\n"
    )
    try:
        completed = subprocess.run(
            [sys.executable, "-c", program], capture_output=True, timeout=20, check=False
        )
    except subprocess.TimeoutExpired:
        pytest.fail("cast_integer took over 20 s on an integral Decimal with a huge exponent")
    assert completed.returncode == 0, completed.stderr.decode()


@given(st.integers(min_value=-(2**70), max_value=2**70))
def test_integer_fits_exactly_bigint(number: int) -> None:
    result = cast_integer(number)
    if -(2**63) <= number <= 2**63 - 1:
        assert result == number
        assert type(result) is int
        assert cast_integer(str(number)) == number
        assert cast_integer(Decimal(number)) == number
    else:
        assert result is UNFIT
        assert cast_integer(str(number)) is UNFIT


@given(st.sampled_from([-(2**63) - 1, -(2**63), 2**63 - 1, 2**63]), st.integers(-3, 3))
def test_integer_bigint_edges(edge: int, delta: int) -> None:
    number = edge + delta
    fits = -(2**63) <= number <= 2**63 - 1
    assert (cast_integer(number) is not UNFIT) is fits


# --- boolean -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"), [(True, True), (False, False), ("true", True), ("false", False)]
)
def test_boolean_takes_booleans_and_their_strings(value: Any, expected: bool) -> None:
    assert cast_boolean(value) is expected


@pytest.mark.parametrize(
    "value", ["True", "FALSE", "yes", "1", "0", "", 1, 0, Decimal(1), [], {}, [True]]
)
def test_boolean_rejects_the_rest(value: Any) -> None:
    assert cast_boolean(value) is UNFIT


# --- object, array, any JSON -------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", [{}, {"a": 1}, {"a": {"b": [1, Decimal("2.5"), None, True]}}, {"名前": "x"}]
)
def test_object_takes_objects(value: dict[str, Any]) -> None:
    result = cast_object(value)
    assert isinstance(result, str)
    assert strict_json(result) == value


@pytest.mark.parametrize("value", [[], [{}], "{}", "x", 1, Decimal("1.5"), True, False])
def test_object_rejects_the_rest(value: Any) -> None:
    assert cast_object(value) is UNFIT


@pytest.mark.parametrize("value", [[], [1, "a", None], [{"a": [Decimal("0.1")]}], [[[]]]])
def test_array_takes_arrays(value: list[Any]) -> None:
    result = cast_array(value)
    assert isinstance(result, str)
    assert strict_json(result) == value


@pytest.mark.parametrize("value", [{}, {"a": [1]}, "[]", "x", 1, Decimal("1.5"), True])
def test_array_rejects_the_rest(value: Any) -> None:
    assert cast_array(value) is UNFIT


@pytest.mark.parametrize(
    "value", ["x", "", 1, Decimal("12345678901234567890.123"), True, False, [], {}, {"a": [1]}]
)
def test_jsonb_takes_any_json(value: Any) -> None:
    result = cast_jsonb(value)
    assert isinstance(result, str)
    assert strict_json(result) == value


def test_json_text_keeps_decimals_exact() -> None:
    value = {"a": Decimal("12345678901234567890.123"), "b": [2**70, Decimal("0.1")]}
    assert strict_json(json_text(value)) == value
    assert "12345678901234567890.123" in json_text(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ([Decimal("NaN")], ["NaN"]),
        ([float("nan")], ["NaN"]),
        (
            {"a": {"b": [Decimal("Infinity"), float("-inf")]}},
            {"a": {"b": ["Infinity", "-Infinity"]}},
        ),
        (
            {"a": [1, {"b": float("nan")}], "c": Decimal("1.5")},
            {"a": [1, {"b": "NaN"}], "c": Decimal("1.5")},
        ),
    ],
)
def test_json_text_makes_non_finite_numbers_strings(value: Any, expected: Any) -> None:
    """JSONB cannot hold NaN/Infinity: inside containers they become the strings "NaN",
    "Infinity", "-Infinity" (valid JSON), as in the raw table (SPEC §9)."""
    assert strict_json(json_text(value)) == expected
    cast = cast_object if isinstance(value, dict) else cast_array
    assert strict_json(cast(value)) == expected
    assert strict_json(cast_jsonb(value)) == expected
    assert strict_json(cast_string(value)) == expected


# --- date and time -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-02T03:04:05Z", datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2024-01-02T03:04:05+00:00", datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2024-01-02T10:00:00+05:30", datetime(2024, 1, 2, 4, 30, tzinfo=UTC)),
        ("2024-01-02T10:00:00+0530", datetime(2024, 1, 2, 4, 30, tzinfo=UTC)),
        ("2024-01-02T10:00:00+05", datetime(2024, 1, 2, 5, 0, tzinfo=UTC)),
        ("2024-01-02T10:00:00-03", datetime(2024, 1, 2, 13, 0, tzinfo=UTC)),
        ("2024-01-02T10:00:00-03:00", datetime(2024, 1, 2, 13, 0, tzinfo=UTC)),
        ("2024-01-02 10:00:00Z", datetime(2024, 1, 2, 10, 0, tzinfo=UTC)),
        ("2024-01-02T10:00:00", datetime(2024, 1, 2, 10, 0, tzinfo=UTC)),
        ("2024-01-02T10:00:00.5", datetime(2024, 1, 2, 10, 0, 0, 500000, tzinfo=UTC)),
        ("2024-01-02T10:00:00.123456Z", datetime(2024, 1, 2, 10, 0, 0, 123456, tzinfo=UTC)),
        ("2024-01-02T10:00:00.123456789Z", datetime(2024, 1, 2, 10, 0, 0, 123457, tzinfo=UTC)),
        ("2024-01-02T10:00:00.1234564Z", datetime(2024, 1, 2, 10, 0, 0, 123456, tzinfo=UTC)),
        ("2024-01-02T10:00:00.1234565Z", datetime(2024, 1, 2, 10, 0, 0, 123457, tzinfo=UTC)),
        ("2024-01-02T10:00:00.12345678", datetime(2024, 1, 2, 10, 0, 0, 123457, tzinfo=UTC)),
        ("2024-01-02T10:00:00.123456789+05:30", datetime(2024, 1, 2, 4, 30, 0, 123457, tzinfo=UTC)),
        ("2024-01-02T10:00:00.123456789-03", datetime(2024, 1, 2, 13, 0, 0, 123457, tzinfo=UTC)),
        ("2024-12-31T23:59:59.9999999Z", datetime(2025, 1, 1, tzinfo=UTC)),
        ("0001-01-01T00:00:00Z", datetime(1, 1, 1, tzinfo=UTC)),
        ("9999-12-31T23:59:59Z", datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)),
    ],
)
def test_timestamptz_converts_offsets(text: str, expected: datetime) -> None:
    result = cast_timestamptz(text)
    assert instant(result) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-02T03:04:05Z", datetime(2024, 1, 2, 3, 4, 5)),
        ("2024-01-02T10:00:00+05:30", datetime(2024, 1, 2, 10, 0)),
        ("2024-01-02T10:00:00+0530", datetime(2024, 1, 2, 10, 0)),
        ("2024-01-02T10:00:00-03", datetime(2024, 1, 2, 10, 0)),
        ("2024-01-02T10:00:00", datetime(2024, 1, 2, 10, 0)),
        ("2024-01-02 10:00:00.25", datetime(2024, 1, 2, 10, 0, 0, 250000)),
        ("2024-01-02T10:00:00.123456789+05:30", datetime(2024, 1, 2, 10, 0, 0, 123457)),
        ("2024-01-02T10:00:00.1234564-03:00", datetime(2024, 1, 2, 10, 0, 0, 123456)),
    ],
)
def test_timestamp_drops_offsets(text: str, expected: datetime) -> None:
    assert wall_clock(cast_timestamp(text)) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10:00:00", time(10, 0, tzinfo=UTC)),
        ("10:00:00Z", time(10, 0, tzinfo=UTC)),
        ("10:00:00+05:30", time(10, 0, tzinfo=PLUS_0530)),
        ("10:00:00+0530", time(10, 0, tzinfo=PLUS_0530)),
        ("10:00:00-03", time(10, 0, tzinfo=MINUS_03)),
        ("10:00:00.123456789Z", time(10, 0, 0, 123457, tzinfo=UTC)),
        ("10:00:00.1234564", time(10, 0, 0, 123456, tzinfo=UTC)),
        ("23:59:58.9999999+05:30", time(23, 59, 59, tzinfo=PLUS_0530)),
    ],
)
def test_timetz_keeps_offsets_and_defaults_to_utc(text: str, expected: time) -> None:
    result = cast_timetz(text)
    assert isinstance(result, time)
    assert result.replace(tzinfo=None) == expected.replace(tzinfo=None)
    assert result.utcoffset() == expected.utcoffset()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10:00:00", time(10, 0)),
        ("10:00:00Z", time(10, 0)),
        ("10:00:00+05:30", time(10, 0)),
        ("10:00:00-0300", time(10, 0)),
        ("10:00:00-03", time(10, 0)),
        ("10:00:00.5", time(10, 0, 0, 500000)),
        ("10:00:00.123456789+05:30", time(10, 0, 0, 123457)),
    ],
)
def test_time_drops_offsets(text: str, expected: time) -> None:
    result = cast_time(text)
    assert isinstance(result, time)
    assert result.tzinfo is None
    assert result == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-02", date(2024, 1, 2)),
        ("2024-02-29", date(2024, 2, 29)),
        ("0001-01-01", date(1, 1, 1)),
        ("9999-12-31", date(9999, 12, 31)),
    ],
)
def test_date_takes_calendar_dates(text: str, expected: date) -> None:
    assert as_date(cast_date(text)) == expected


BAD_DATES = [
    "2024-02-30",
    "2023-02-29",
    "2024-13-01",
    "2024-00-10",
    "not a date",
    "",
    "10000-01-01",
]


@pytest.mark.parametrize("text", BAD_DATES)
def test_bad_dates_do_not_fit(text: str) -> None:
    assert cast_date(text) is UNFIT
    moment = f"{text}T00:00:00Z" if text[:1].isdigit() else text
    assert cast_timestamptz(moment) is UNFIT
    assert cast_timestamp(moment) is UNFIT


@pytest.mark.parametrize(
    "value",
    [20240101, 1704153600, Decimal("20240101"), 1.5, True, [], {}, ["2024-01-01"]],
)
def test_date_time_casts_reject_non_strings(value: Any) -> None:
    for cast in (cast_date, cast_timestamptz, cast_timestamp, cast_timetz, cast_time):
        assert cast(value) is UNFIT


@pytest.mark.parametrize(
    "text",
    [
        "2024-01-02T25:00:00Z",
        "2024-01-02T10:61:00Z",
        "2024-01-02T10:00:00+25:00",
        "10000-01-01T00:00:00Z",
        "2024-01-02Tnoon",
        "yesterday",
    ],
)
def test_bad_timestamps_do_not_fit(text: str) -> None:
    assert cast_timestamptz(text) is UNFIT
    assert cast_timestamp(text) is UNFIT


@pytest.mark.parametrize("text", ["25:00:00", "10:60:00", "10:00:61", "noon", "", "10:00:00+25:00"])
def test_bad_times_do_not_fit(text: str) -> None:
    assert cast_timetz(text) is UNFIT
    assert cast_time(text) is UNFIT


@given(
    st.datetimes(
        min_value=datetime(1, 1, 2),
        max_value=datetime(9999, 12, 30),
        timezones=st.integers(min_value=-(15 * 60 + 59), max_value=15 * 60 + 59).map(
            lambda minutes: timezone(timedelta(minutes=minutes))
        ),
    )
)
def test_timestamptz_reads_isoformat_back(moment: datetime) -> None:
    assert instant(cast_timestamptz(moment.isoformat())) == moment
    assert wall_clock(cast_timestamp(moment.isoformat())) == moment.replace(tzinfo=None)


@given(
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    st.sampled_from([1, -1]),
    st.integers(min_value=16 * 60, max_value=23 * 60 + 59),
    st.sampled_from(["{h:02d}:{m:02d}", "{h:02d}{m:02d}", "{h:02d}"]),
)
def test_offsets_postgresql_refuses_are_unfit(
    moment: datetime, sign: int, minutes: int, style: str
) -> None:
    """Python reads offsets up to ±23:59, PostgreSQL only up to ±15:59:59 ("time zone
    displacement out of range", which would refuse the batch): NULL + change (SPEC §4.4), for
    every column type with a time of day, whether the text takes the plain way or not."""
    hours, rest = divmod(minutes, 60)
    offset = ("+" if sign > 0 else "-") + style.format(h=hours, m=rest)
    caster = RowCaster([("t", cast_timestamptz, TIMESTAMPTZ)])
    nulled = ([None], [{"field": "t", "change": "NULLED", "reason": "DESTINATION_TYPECAST_ERROR"}])
    for text in (
        moment.replace(tzinfo=None).isoformat() + offset,
        moment.replace(tzinfo=None).isoformat(sep=" ", timespec="seconds") + offset,
        moment.replace(tzinfo=None).isoformat(timespec="microseconds") + "1" + offset,
    ):
        assert cast_timestamptz(text) is UNFIT, text
        assert cast_timestamp(text) is UNFIT, text
        assert caster.row({"t": text}) == nulled, text
        assert caster.row_of_values((text,), True) == nulled, text
    clock = moment.time().isoformat() + offset
    assert cast_timetz(clock) is UNFIT, clock
    assert cast_time(clock) is UNFIT, clock


@given(
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 30)),
    st.integers(min_value=0, max_value=999),
)
def test_nine_fractional_digits_round_to_microseconds(moment: datetime, extra: int) -> None:
    assume(extra != 500)  # exact ties: the rounding direction is not specified
    nanos = moment.microsecond * 1000 + extra
    text = moment.replace(microsecond=0).isoformat() + f".{nanos:09d}Z"
    rounded = moment.replace(microsecond=0, tzinfo=UTC) + timedelta(
        microseconds=(nanos + 500) // 1000
    )
    assert instant(cast_timestamptz(text)) == rounded


# --- NULL ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("cast", ALL_CASTS)
def test_none_stays_none(cast: Any) -> None:
    assert cast(None) is None


@pytest.mark.parametrize(
    "column",
    [
        STRING,
        NUMBER,
        INTEGER,
        BOOLEAN,
        OBJECT,
        ARRAY,
        JSONB,
        TIMESTAMPTZ,
        TIMESTAMP,
        TIMETZ,
        TIME,
        DATE,
    ],
)
def test_cast_for_every_column_type(column: ColumnType) -> None:
    cast = cast_for(column, non_finite_numbers=False)
    assert cast(None) is None
    samples: dict[ColumnType, tuple[Any, Any]] = {
        STRING: (7, "7"),
        NUMBER: ("1.25", Decimal("1.25")),
        INTEGER: ("7", 7),
        BOOLEAN: ("true", True),
        OBJECT: ({"a": 1}, '{"a":1}'),
        ARRAY: ([1], "[1]"),
        JSONB: ("x", '"x"'),
        TIMESTAMPTZ: (
            "2024-01-02T03:04:05.1234567Z",
            datetime(2024, 1, 2, 3, 4, 5, 123457, tzinfo=UTC),
        ),
        TIMESTAMP: ("2024-01-02T03:04:05.1234567+01:00", datetime(2024, 1, 2, 3, 4, 5, 123457)),
        TIMETZ: ("03:04:05", time(3, 4, 5, tzinfo=UTC)),
        TIME: ("03:04:05+01:00", time(3, 4, 5)),
        DATE: ("2024-01-02", date(2024, 1, 2)),
    }
    value, expected = samples[column]
    result = cast(value)
    if isinstance(expected, str) and column in (OBJECT, ARRAY, JSONB):
        assert strict_json(result) == strict_json(expected)
    elif column is DATE:
        assert as_date(result) == expected
    else:
        assert result == expected
    rejected: Any = {
        STRING: None,
        NUMBER: "abc",
        INTEGER: "1.5",
        BOOLEAN: "yes",
        OBJECT: [],
        ARRAY: {},
        JSONB: None,
        TIMESTAMPTZ: "2024-02-30T00:00:00Z",
        TIMESTAMP: "nope",
        TIMETZ: "25:00",
        TIME: "25:00",
        DATE: "2024-13-01",
    }[column]
    if rejected is not None:
        assert cast(rejected) is UNFIT


# --- rows --------------------------------------------------------------------------------------


def plan_of(columns: list[tuple[str, ColumnType]], *, typed: bool = True) -> list[Any]:
    """A RowCaster plan: property name, cast and (when `typed`) the column type."""
    return [
        (name, cast_for(column, non_finite_numbers=False), column if typed else None)
        for name, column in columns
    ]


ROW_COLUMNS = [
    ("id", INTEGER),
    ("User-Name", STRING),
    ("amount", NUMBER),
    ("tags", ARRAY),
    ("attrs", OBJECT),
    ("active", BOOLEAN),
    ("missing", INTEGER),
]


@pytest.mark.parametrize("typed", [True, False])
def test_row_casts_in_plan_order_and_records_nulled_fields(typed: bool) -> None:
    caster = RowCaster(plan_of(ROW_COLUMNS, typed=typed))
    record = {
        "active": "maybe",
        "attrs": {"a": 1},
        "tags": {"not": "an array"},
        "amount": "abc",
        "User-Name": 5,
        "id": "12",
        "extra": "ignored",
    }
    values, changes = caster.row(record)
    assert len(values) == 7
    assert values[0] == 12
    assert values[1] == "5"
    assert values[2] is None
    assert values[3] is None
    assert strict_json(values[4]) == {"a": 1}
    assert values[5] is None
    assert values[6] is None
    assert changes == [
        {"field": "amount", "change": "NULLED", "reason": "DESTINATION_TYPECAST_ERROR"},
        {"field": "tags", "change": "NULLED", "reason": "DESTINATION_TYPECAST_ERROR"},
        {"field": "active", "change": "NULLED", "reason": "DESTINATION_TYPECAST_ERROR"},
    ]


@pytest.mark.parametrize("typed", [True, False])
def test_row_nulls_out_of_range_and_wrong_python_types(typed: bool) -> None:
    caster = RowCaster(
        plan_of([("n", INTEGER), ("m", INTEGER), ("b", BOOLEAN), ("d", NUMBER)], typed=typed)
    )
    values, changes = caster.row({"n": 2**63, "m": -(2**63) - 1, "b": 1, "d": True})
    assert values == [None, None, None, None]
    assert UNFIT not in values
    assert [change["field"] for change in changes] == ["n", "m", "b", "d"]
    values, changes = caster.row({"n": 2**63 - 1, "m": -(2**63), "b": False, "d": 2**70})
    assert values == [2**63 - 1, -(2**63), False, 2**70]
    assert changes == []


def test_row_uses_original_property_names_in_changes() -> None:
    names = ["Prénom du client", "名前", 'x"); import os; os._exit(3) #', "a\nb\n    c"]
    caster = RowCaster(
        plan_of([(names[0], INTEGER), (names[1], DATE), (names[2], BOOLEAN), (names[3], ARRAY)])
    )
    record = {names[0]: "x", names[1]: "2024-02-30", names[2]: "no", names[3]: "no"}
    values, changes = caster.row(record)
    assert values == [None, None, None, None]
    assert [change["field"] for change in changes] == names
    assert all(change["change"] == "NULLED" for change in changes)
    assert all(change["reason"] == "DESTINATION_TYPECAST_ERROR" for change in changes)
    assert caster.row({names[2]: True, names[3]: []})[0] == [None, None, True, "[]"]


def test_row_without_unfit_values_has_no_changes() -> None:
    caster = RowCaster(plan_of([("b", INTEGER), ("a", STRING)]))
    assert caster.row({"a": "x", "b": 2**63 - 1}) == ([2**63 - 1, "x"], [])
    assert caster.row({}) == ([None, None], [])
    assert caster.row({"a": None, "b": None}) == ([None, None], [])


def test_empty_plan() -> None:
    assert RowCaster([]).row({"a": 1}) == ([], [])


ALL_COLUMNS = [STRING, NUMBER, INTEGER, BOOLEAN, OBJECT, ARRAY, JSONB]
ALL_COLUMNS += [TIMESTAMPTZ, TIMESTAMP, TIMETZ, TIME, DATE]
ROW_VALUES: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.decimals(allow_nan=False, allow_infinity=False, places=3),
    st.sampled_from(
        [
            "",
            "x",
            "12",
            "1.5",
            "true",
            "2024-01-02",
            "10:00:00",
            "2024-02-30",
            "2024-02-30 10:00:00",
            "2023-W01-1",
        ]
    ),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.none()),
)


@given(st.lists(st.tuples(st.sampled_from(ALL_COLUMNS), ROW_VALUES), max_size=8))
def test_row_agrees_with_the_casts(cells: list[tuple[ColumnType, Any]]) -> None:
    """The row of a record is each cast applied to its value, UNFIT made NULL and recorded,
    whether or not the column types let common values skip the cast."""
    columns = [(f"p{index}", column) for index, (column, _) in enumerate(cells)]
    record = {f"p{index}": value for index, (_, value) in enumerate(cells)}
    expected_values = []
    expected_fields = []
    for name, column in columns:
        result = cast_for(column, non_finite_numbers=False)(record[name])
        if result is UNFIT:
            expected_fields.append(name)
            result = None
        expected_values.append(result)
    for typed in (True, False):
        values, changes = RowCaster(plan_of(columns, typed=typed)).row(record)
        assert values == expected_values
        assert [type(value) for value in values] == [type(value) for value in expected_values]
        assert [change["field"] for change in changes] == expected_fields


# --- properties --------------------------------------------------------------------------------


@given(
    st.decimals(
        min_value=Decimal("-1e40"),
        max_value=Decimal("1e40"),
        allow_nan=False,
        allow_infinity=False,
    )
)
def test_number_keeps_finite_decimals(number: Decimal) -> None:
    assert cast_number(number) == number
    from_text = cast_number(str(number))
    assert isinstance(from_text, Decimal)
    assert from_text == number


JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.decimals(allow_nan=True, allow_infinity=True)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
# Records reach the casts with NUL characters already removed (rawdata.clean_record).
# What reaches a cast has been cleaned: no NUL, no lone surrogate (see rawdata).
NUL_FREE = st.characters(exclude_characters="\x00", exclude_categories=("Cs",))
FINITE_JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.decimals(allow_nan=False, allow_infinity=False)
    | st.text(NUL_FREE, max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(NUL_FREE, max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@given(JSON_VALUES)
def test_string_never_rejects_json_values(value: Any) -> None:
    result = cast_string(value)
    assert result is not UNFIT
    assert (result is None) is (value is None)
    if value is not None:
        assert isinstance(result, str)


@given(FINITE_JSON_VALUES)
def test_string_round_trips_finite_json_values(value: Any) -> None:
    result = cast_string(value)
    if value is None:
        assert result is None
    elif isinstance(value, str):
        assert result == value
    else:
        assert strict_json(result) == value


# The pattern the layouts of `casts.PLAIN_DATETIME` replaced, ASCII digits only.
_PLAIN_DATETIME_PATTERN = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?"
    r"(?:Z|[+-][0-9]{2}(?::?[0-9]{2})?)?"
)
_DATETIME_CHARACTERS = "0123456789-T :.Z+,Wt\u0663\uff12é\ud800"


@given(
    st.from_regex(_PLAIN_DATETIME_PATTERN, fullmatch=True)
    | st.text(_DATETIME_CHARACTERS, max_size=34)
    | st.from_regex(_PLAIN_DATETIME_PATTERN, fullmatch=True).flatmap(
        lambda text: st.tuples(
            st.integers(0, len(text)), st.integers(0, 2), st.text(_DATETIME_CHARACTERS, max_size=2)
        ).map(lambda edit: text[: edit[0]] + edit[2] + text[edit[0] + edit[1] :])
    )
)
@example("2024-01-02T03:04:05.1234567")
@example("2024-01-02T03:04:05.1234567+01:00")
@example("2024-01-02T03:04:05+01:00:00")
@example("2024-01-02T03:04:05,5")
@example("2024-01-02t03:04:05")
@example("2024-01-02T03:04:05.123456-0130")
@example("\u0663024-01-02T03:04:05")
@example("2024-01-02T03:04:05.Z")
def test_plain_datetime_layouts_are_the_pattern(text: str) -> None:
    """A text is of a plain date-time layout exactly when it matches the pattern with ASCII
    digits: other digits, a lone surrogate or any other character make it not plain (it is
    then parsed and sent formatted, never sent as it is)."""
    assert (layout(text) in PLAIN_DATETIME) == bool(_PLAIN_DATETIME_PATTERN.fullmatch(text))
