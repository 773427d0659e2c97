"""The casts (SPEC §4.4): plain functions of one JSON value that return the value to write into
a column of their type (None for NULL) or `UNFIT`: the value does not fit the column, so the
final table gets NULL and `_airbyte_meta.changes` records the property. They cost no server
round trip and no per-value PL/pgSQL. Which cast a column type uses is said by its record in
`pgtypes`.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any, Final

from target_postgres_hp.rawdata import (
    ENCODER,
    NumberText,
    SpelledNumber,
    make_storable,
    within_numeric,
)


class _Unfit:
    """The marker of a value that does not fit its column."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "UNFIT"


UNFIT: Final = _Unfit()

Cast = Callable[[Any], Any]

BIGINT_MIN = -(2**63)
BIGINT_MAX = 2**63 - 1


_JSON = ENCODER

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
    if kind is NumberText:  # a number beyond NUMERIC, as it was written
        return str(value)
    if kind is SpelledNumber:  # `1e5`, as it was written
        return value.text
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
        try:
            return Decimal(value.strip())
        except ArithmeticError:  # an exponent beyond even Decimal's range: beyond NUMERIC's
            return None
    return None


#: An integer of fewer bits has fewer digits than NUMERIC holds before the point.
_NUMERIC_MAX_INT_BITS = 400_000
_within_numeric = within_numeric


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
    return _integral(value) if kind is SpelledNumber else UNFIT


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
        return Decimal(value) if kind is SpelledNumber else UNFIT

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
    """Any JSON value but a number JSONB cannot hold (a `NumberText`; deeper in an object or
    an array it is held as its text, as the raw table holds it)."""
    if value is None:
        return None
    return UNFIT if type(value) is NumberText else json_text(value)


def _round_fraction(text: str, parsed: Any) -> Any:
    """Python keeps six fractional digits and drops the rest; round them instead."""
    match = _LONG_FRACTION.search(text)
    if match is not None and match.group(1)[6] >= "5":
        if isinstance(parsed, time):
            moment = datetime.combine(date(2000, 1, 1), parsed) + timedelta(microseconds=1)
            if moment.day != 1:  # 23:59:59.9999995 and later round up to 24:00:00
                return _end_of_day(parsed)
            return moment.timetz()
        return parsed + timedelta(microseconds=1)
    return parsed


#: Turns every ASCII digit into 0: what is left of a text is its layout.
DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")

#: The layouts (`layout`) of the date-times PostgreSQL reads exactly as Python does:
#: YYYY-MM-DD, T or a space, HH:MM:SS, up to six fractional digits, then no offset, Z, or
#: ±HH, ±HHMM, ±HH:MM. A valid one is sent as received, which spares formatting it again
#: (see `pgtypes.PlainText`); Python also reads other forms (week dates, basic format, a
#: comma or more digits in the fraction, offsets with seconds), which are parsed and sent
#: formatted. Each layout gives where the hours of its offset are (0: no ±HH offset), which
#: must be below 16 (PostgreSQL reads offsets up to 15:59:59; Python up to 23:59).
PLAIN_DATETIME: Final[dict[bytes, int]] = {
    "".join(parts).encode(): 20 + len(parts[3]) if parts[4][:1] in ("+", "-") else 0
    for parts in itertools.product(
        ["0000-00-00"],
        ["T", " "],
        ["00:00:00"],
        ["", *("." + "0" * digits for digits in range(1, 7))],
        ["", "Z", *(sign + offset for sign in "+-" for offset in ("00", "0000", "00:00"))],
    )
}
#: The first offset hours PostgreSQL refuses, as text.
OFFSET_HOURS_REFUSED = "16"
_MAX_OFFSET = timedelta(hours=16)
PLAIN_DATE = re.compile(r"\d{4}-\d\d-\d\d")


def layout(text: str) -> bytes:
    """The text with its ASCII digits as 0 and any other non-ASCII character as `?`: a set of
    layouts tests a shape in one lookup, several times quicker than a regular expression."""
    return text.encode("ascii", "replace").translate(DIGITS_AS_ZERO)


#: A time of day Python does not read but PostgreSQL does: a leap second (`23:59:60`, any
#: minute's 60th second) or `24:00:00`, with no fraction but zeros; and `z` for `Z`.
_BEYOND_PYTHON = re.compile(
    r"(?P<head>\d{4}-\d\d-\d\d[Tt ])?(?P<hour>\d\d):(?P<minute>\d\d):(?P<second>\d\d)"
    r"(?P<fraction>[.,]0+)?(?P<offset>[Zz]|[+-]\d\d(?::?\d\d)?)?",
    re.ASCII,
)


def _beyond_python(value: str, *, date_time: bool) -> tuple[str, timedelta] | None:
    """For a date-time (or a time) Python refuses: the text Python reads in its place and
    what to add to it, so that the result is what PostgreSQL stores; None when PostgreSQL
    refuses it too."""
    match = _BEYOND_PYTHON.fullmatch(value)
    if match is None or (match["head"] is not None) is not date_time:
        if value[-1:] == "z":
            return value[:-1] + "Z", timedelta(0)
        return None
    hour, minute, second = match["hour"], match["minute"], match["second"]
    offset = (match["offset"] or "").upper()
    head = value[: match.start("hour")]
    if second == "60" and hour < "24":
        return f"{head}{hour}:{minute}:59{offset}", timedelta(seconds=1)
    if hour == "24" and minute == second == "00":
        return f"{head}23:00:00{offset}", timedelta(hours=1)
    if offset == "Z" and value[-1] == "z":
        return value[:-1] + "Z", timedelta(0)
    return None


def _offset_fits(parsed: Any) -> Any:
    """A parsed date-time or time, or UNFIT when its offset is beyond PostgreSQL's."""
    offset = parsed.utcoffset()
    if offset is not None and not -_MAX_OFFSET < offset < _MAX_OFFSET:
        return UNFIT
    return parsed


def _parse_datetime(value: Any) -> Any:
    if type(value) is not str:
        return UNFIT
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        instead = _beyond_python(value, date_time=True)
        if instead is None:
            return UNFIT
        parsed = _parse_datetime(instead[0])
        if parsed is UNFIT or not instead[1]:
            return parsed
        try:
            return (datetime.fromisoformat(parsed) if type(parsed) is str else parsed) + instead[1]
        except OverflowError:
            return UNFIT
    at = PLAIN_DATETIME.get(layout(value))
    if at is not None:
        return UNFIT if at and value[at : at + 2] >= OFFSET_HOURS_REFUSED else value
    if "." in value or "," in value:
        try:
            parsed = _round_fraction(value, parsed)
        except OverflowError:
            return UNFIT
    return _offset_fits(parsed)


def _utc_if_naive(parsed: Any) -> Any:
    """A parsed date-time or time without offset means UTC. Text is left as it is: without an
    offset PostgreSQL reads it in the session's time zone, which is UTC."""
    if parsed is UNFIT or type(parsed) is str or parsed.tzinfo is not None:
        return parsed
    return parsed.replace(tzinfo=timezone.utc)


def _offset_dropped(parsed: Any) -> Any:
    """A parsed date-time or time keeps its wall clock and loses its offset. Text is left as it
    is: PostgreSQL ignores the offset of text read as TIMESTAMP or TIME (`24:00:00+03`)."""
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
        instead = _beyond_python(value, date_time=False)
        if instead is None:
            return UNFIT
        parsed = _parse_time(instead[0])
        if parsed is UNFIT or type(parsed) is str or not instead[1]:
            return parsed
        moment = datetime.combine(date(2000, 1, 1), parsed) + instead[1]
        return moment.timetz() if moment.day == 1 else _end_of_day(parsed)
    if "." in value or "," in value:
        parsed = _round_fraction(value, parsed)
        if parsed is UNFIT or type(parsed) is str:
            return parsed
    return _offset_fits(parsed)


def _end_of_day(parsed: time) -> Any:
    """`24:00:00` with the offset of `parsed`, as PostgreSQL reads and stores it (Python's
    `time` ends at 23:59:59.999999)."""
    offset = parsed.utcoffset()
    if offset is None:
        return "24:00:00"
    if not -_MAX_OFFSET < offset < _MAX_OFFSET:
        return UNFIT
    sign = "-" if offset < timedelta(0) else "+"
    minutes, seconds = divmod(int(abs(offset).total_seconds()), 60)
    text = f"24:00:00{sign}{minutes // 60:02d}:{minutes % 60:02d}"
    return f"{text}:{seconds:02d}" if seconds else text


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
    return value if PLAIN_DATE.fullmatch(value) else parsed
