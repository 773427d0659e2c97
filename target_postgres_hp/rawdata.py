"""One Singer RECORD as one raw-table row: id, extraction time, JSON data, meta, generation.

The data is the record as received, with what JSONB cannot hold made storable and recorded in
`_airbyte_meta`: NUL characters (removed, at any depth, keys included), NaN/Infinity (kept as the
strings "NaN", "Infinity", "-Infinity") and numbers beyond NUMERIC's range (kept as their text,
exactly as received: `NumberText`).
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import msgspec


class NumberText(str):
    """A JSON number PostgreSQL's NUMERIC (so JSONB) cannot hold, as its text exactly as
    received (`exact_number`): JSON text holds it as a string, a VARCHAR column as its text;
    any other column NULLs it (SPEC §4.4, §9)."""

    __slots__ = ()


class SpelledNumber(Decimal):
    """A JSON number whose text `str()` would not give back (`1e5`, `0.0000001`), with that
    text: a VARCHAR column takes a number's text exactly as received (SPEC §4.4)."""

    __slots__ = ("text",)
    text: str


def _encode_number_text(value: object) -> object:
    if type(value) is NumberText:
        return str(value)
    if type(value) is SpelledNumber:
        return Decimal(value)
    msg = f"cannot encode {type(value).__name__} as JSON"
    raise TypeError(msg)


#: Encodes JSON text; a `NumberText` (which msgspec does not know) becomes a JSON string.
ENCODER = msgspec.json.Encoder(decimal_format="number", enc_hook=_encode_number_text)
_ENCODER = ENCODER

#: PostgreSQL's NUMERIC holds up to 131072 digits before the point and 16383 after it.
NUMERIC_MAX_WHOLE_DIGITS = 131072
NUMERIC_MAX_FRACTION_DIGITS = 16383


def within_numeric(number: Decimal) -> bool:
    """Whether PostgreSQL's NUMERIC holds this finite number (its digits as written: `1.000`
    has three after the point)."""
    exponent = number.as_tuple().exponent
    return (
        number.adjusted() < NUMERIC_MAX_WHOLE_DIGITS
        and isinstance(exponent, int)
        and -exponent <= NUMERIC_MAX_FRACTION_DIGITS
    )


#: How many `NumberText` `exact_number` and `exact_integer` made (one reader, one thread):
#: a decoder's caller tells by it whether a value it read holds one, without walking it.
number_texts_made = [0]


def _number_text(text: str) -> NumberText:
    number_texts_made[0] += 1
    return NumberText(text)


def exact_number(text: str) -> Decimal | NumberText:
    """A JSON number with a fraction or an exponent (a decoder's `float_hook`): its Decimal
    (a `SpelledNumber` when `str()` would not give its text back), or its text when NUMERIC
    cannot hold it."""
    if "e" not in text and "E" not in text and len(text) < _SHORT_NUMBER:
        number = Decimal(text)
        return number if number.adjusted() >= _PLAIN_ADJUSTED else _spelled(number, text)
    try:
        number = Decimal(text)
    except ArithmeticError:  # an exponent beyond even Decimal's range
        return _number_text(text)
    return _spelled(number, text) if within_numeric(number) else _number_text(text)


def exact_integer(text: str) -> int | Decimal | NumberText:
    """A JSON integer (the standard library's `parse_int`): an int, but a Decimal beyond
    Python's 4,300 digits of int text, or its text beyond NUMERIC's range."""
    if len(text) < _SHORT_NUMBER:
        return int(text)
    number = Decimal(text)
    return number if within_numeric(number) else _number_text(text)


#: A number without exponent and of fewer characters is within NUMERIC's range.
_SHORT_NUMBER = 1000
#: `str()` of a Decimal uses an exponent when its leading digit is further after the point.
_PLAIN_ADJUSTED = -6


def _spelled(number: Decimal, text: str) -> SpelledNumber:
    spelled = SpelledNumber(number)
    spelled.text = text
    return spelled


#: Digits (and exponent signs) as 0 and `E` as `e`: an exponent of four digits or more, the
#: only way a line of fewer than `_LONG_DIGITS` characters can hold a number beyond NUMERIC
#: (more than 16383 digits after the point, 131072 before), is then `0e0000` somewhere (a
#: JSON number has a digit before its exponent).
_EXPONENT_SHAPE = bytes.maketrans(b"123456789E+-", b"000000000e00")
#: Without such an exponent a number beyond NUMERIC has more digits than this in a row (16383
#: less the 999 a three-digit exponent can move), and so has an integer msgspec cannot read
#: (Python's limit on the text of an int is 4,300 digits), which the slow way reads.
_LONG_DIGITS = 4_000
_MANTISSA = re.compile(rb"[ \t\r\n]*(-?[0-9]+(?:\.[0-9]+)?)")
_EXPONENT = re.compile(rb"[eE][-+]?[0-9]+")


def _number_at(line: bytes, at: int) -> bytes | None:
    """The number literal whose exponent letter is at `at`, if that `e` ends the mantissa of
    a JSON number: after a `:`, `,` or `[` with no quote between (not inside a string, as far
    as that tells), or at the start of the text (a bare number)."""
    after = line.rfind(b'"', 0, at) + 1
    separator = max(
        line.rfind(b":", after, at), line.rfind(b",", after, at), line.rfind(b"[", after, at)
    )
    if separator < 0 and after:
        return None
    mantissa = _MANTISSA.fullmatch(line, separator + 1, at)
    exponent = _EXPONENT.match(line, at)
    if mantissa is None or exponent is None:
        return None
    return line[mantissa.start(1) : exponent.end()]


def unholdable_numbers(line: str | bytes | msgspec.Raw) -> bool:
    """Whether JSON text (a line, a record, a value) may hold a number PostgreSQL's NUMERIC
    cannot hold (which the slow way reads as its text, `exact_number`), or an integer too long
    for msgspec. Quick for common text: one translation and one search; only text with a
    four-digit exponent, or long text, is looked at more closely."""
    data = line.encode("utf-8", "surrogatepass") if isinstance(line, str) else bytes(line)
    shape = data.translate(_EXPONENT_SHAPE)
    at = shape.find(b"0e0000")
    while at >= 0:
        text = _number_at(data, at + 1)
        if text is not None:
            try:
                if not within_numeric(Decimal(text.decode("ascii"))):
                    return True
            except ArithmeticError:  # beyond Decimal's range: the slow way tells
                return True
        at = shape.find(b"0e0000", at + 1)
    # A digit run that long: the slow way reads it (rare and long lines only).
    return len(data) > _LONG_DIGITS and b"0" * _LONG_DIGITS in shape


TRUNCATED = {"change": "TRUNCATED", "reason": "DESTINATION_SERIALIZATION_ERROR"}

_COUNTER_BITS = 74
_COUNTER_MASK = (1 << _COUNTER_BITS) - 1
_LOW48 = (1 << 48) - 1
_HIGH26 = (1 << 26) - 1


class TimeOrderedIds:
    """UUIDv7 strings (RFC 9562): a millisecond timestamp, then a counter seeded at random.

    Ids made later sort later, so the raw table's primary-key index is appended to at its
    right edge instead of being written all over, as random UUIDs would make it.

    Everything but the last 48 bits (the timestamp, the version, the counter's top 26 bits)
    changes at most once a millisecond, so its text is kept and one number is formatted per id.
    `next` is a generator's `__next__`, its state in the generator's locals: an id costs no
    Python call frame and no attribute writes (one is made per record).
    """

    def __init__(self) -> None:
        seed = int.from_bytes(os.urandom(10), "big") & _COUNTER_MASK
        #: The next id; never smaller than the previous one, even if the clock steps back.
        self.next = self._ids(seed >> 48, seed & _LOW48).__next__

    @staticmethod
    def _ids(high: int, low: int) -> Iterator[str]:
        """The ids, from a counter of `high` (top 26 bits) and `low` (low 48 bits)."""
        time_ns = time.time_ns
        millis, prefix_key, prefix = 0, -1, ""
        while True:
            low += 1
            if low > _LOW48:
                low = 0
                high = (high + 1) & _HIGH26
            now = time_ns() // 1_000_000
            if now > millis:
                millis = now
            key = millis << 26 | high
            if key != prefix_key:
                prefix_key = key
                stamp = f"{millis:012x}"
                prefix = (
                    f"{stamp[:8]}-{stamp[8:]}-{0x7000 | high >> 14:04x}-"
                    f"{0x8000 | high & 0x3FFF:04x}-"
                )
            yield f"{prefix}{low:012x}"


def first_id_at(millis: int) -> str:
    """The smallest id `TimeOrderedIds` can make at or after this millisecond: every id made
    later sorts at or after it, every id made earlier before it."""
    text = f"{millis << 80 | 0x7 << 76 | 0b10 << 62:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def _non_finite_text(value: float | Decimal) -> str | None:
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
    elif isinstance(value, Decimal) and not value.is_finite():
        if value.is_nan():
            return "NaN"
        return "Infinity" if value > 0 else "-Infinity"
    return None


def _storable_text(value: str) -> tuple[str, bool]:
    """A string without NUL characters and with any lone UTF-16 surrogate (which UTF-8 cannot
    hold) replaced by U+FFFD, and whether it changed."""
    changed = False
    if "\x00" in value:
        value, changed = value.replace("\x00", ""), True
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            paired = value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
            value, changed = paired, True
    return value, changed


def make_storable(value: Any) -> tuple[Any, bool]:
    """`value` with NUL characters removed, lone surrogates replaced, NaN/Infinity turned
    into strings, and whether anything had to change (a `NumberText` counts as changed: it is
    a number kept as text). Unchanged containers are returned as
    they are."""
    if isinstance(value, str):
        return (value, True) if type(value) is NumberText else _storable_text(value)
    if isinstance(value, dict):
        changed = False
        cleaned: dict[str, Any] = {}
        for key, item in value.items():
            new_key, key_changed = make_storable(key)
            new_item, item_changed = make_storable(item)
            changed = changed or key_changed or item_changed
            cleaned[new_key] = new_item
        return (cleaned, True) if changed else (value, False)
    if isinstance(value, list):
        items = [make_storable(item) for item in value]
        if any(item_changed for _, item_changed in items):
            return [item for item, _ in items], True
        return value, False
    if isinstance(value, (float, Decimal)):
        text = _non_finite_text(value)
        return (text, True) if text is not None else (value, False)
    return value, False


def parse_time_extracted(value: object) -> datetime | None:
    """A Singer `time_extracted` as an aware datetime (naive means UTC); None if unusable."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
    else:
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=timezone.utc)
    try:
        return parsed.astimezone(timezone.utc)
    except OverflowError:
        return None


_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")


def number_texts_restored(data: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    """Raw data read back for typing, with each top-level number the raw table keeps as text
    (a string that is a JSON number NUMERIC cannot hold, in a TRUNCATED property) a
    `NumberText` again, so that it types as `clean_record`'s did."""
    for change in meta.get("changes", []):
        if not isinstance(change, dict) or change.get("change") != "TRUNCATED":
            continue
        field = change.get("field")
        value = data.get(field) if isinstance(field, str) else None
        if type(value) is str and _JSON_NUMBER.fullmatch(value):
            number = exact_number(value)
            if type(number) is NumberText:
                data[field] = number  # type: ignore[index]
    return data


def clean_record(
    record: dict[str, Any], renamed: Mapping[str, str] | None = None
) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """The record with NUL characters removed and NaN/Infinity made strings, and one
    `TRUNCATED` change per top-level property that needed it (or held a `NumberText`),
    naming the property (with its NUL characters removed, as JSONB holds it).

    A top-level key that cleaning changes is kept under `renamed`'s key for it (the
    schema's, `naming.renamed_keys`), else under its cleaned name, and never over the value
    of another key: a key the record holds as it is keeps its own, then the schema's renamed
    properties take theirs, then any other cleaned key takes its cleaned name or, if that is
    taken, that name with the first free `_<n>` suffix (SPEC §9: NUL removal never separates a
    value from its column)."""
    if not make_storable(record)[1]:
        return record, []
    renamed = renamed or {}
    data: dict[str, Any] = {}
    #: Per key of `data` whose value or key cleaning changed, the property it names.
    changed: dict[str, str] = {}
    moved: list[tuple[int, str, str, Any]] = []
    for key, value in record.items():
        new_key, key_changed = make_storable(key)
        new_value, value_changed = make_storable(value)
        if key_changed:
            wanted = renamed.get(key)
            rank = 0 if wanted is not None else 1
            moved.append((rank, wanted or new_key, new_key, new_value))
            continue
        data[key] = new_value
        if value_changed:
            changed[key] = key
    reserved = set(renamed.values())
    for rank, wanted, field, value in sorted(moved, key=lambda item: item[0]):
        stored, number = wanted, 2
        while stored in data or (rank and stored in reserved):
            stored = f"{wanted}_{number}"
            number += 1
        data[stored] = value
        changed[stored] = field
    return data, [{"field": field, **TRUNCATED} for field in changed.values()]


class RawRowBuilder:
    """Turns one stream's records into the id, extraction time, data and meta of raw rows."""

    def __init__(self, sync_id: int) -> None:
        self.sync_id = sync_id
        #: A new raw id (`TimeOrderedIds.next`).
        self.next_id = TimeOrderedIds().next
        self._last_read_at: datetime | None = None
        self.empty_meta = _ENCODER.encode({"changes": [], "sync_id": sync_id}).decode("utf-8")
        #: The last extraction time's text, and the `time_extracted` it was made from.
        self.last_text = ""
        self.text_of: object = None

    def extracted_at(self, time_extracted: object) -> datetime:
        """The record's own `time_extracted` (in UTC), else the time it was read; read times
        never go backwards within the stream, even if the clock does."""
        moment = parse_time_extracted(time_extracted)
        if moment is None:
            moment = datetime.now(timezone.utc)
            if self._last_read_at is not None and moment < self._last_read_at:
                moment = self._last_read_at
            self._last_read_at = moment
        return moment

    def meta_json(self, changes: list[dict[str, str]]) -> str:
        """`_airbyte_meta` as JSON text."""
        if not changes:
            return self.empty_meta
        return _ENCODER.encode({"changes": changes, "sync_id": self.sync_id}).decode("utf-8")

    def extracted_text(self, time_extracted: object) -> str:
        """The extraction time of one record as ISO text; a `time_extracted` like the last
        one's (`text_of`) reuses its text (`last_text`)."""
        if time_extracted is None or time_extracted != self.text_of:
            # Fixed width, so the texts of one stream compare in time order.
            moment = self.extracted_at(time_extracted)
            self.last_text = moment.isoformat(timespec="microseconds")
            self.text_of = time_extracted
        return self.last_text


def data_json(data: dict[str, Any]) -> str:
    """`_airbyte_data` of a cleaned record, as JSON text."""
    return _ENCODER.encode(data).decode("utf-8")
