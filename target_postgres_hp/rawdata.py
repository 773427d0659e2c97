"""One Singer RECORD as one raw-table row: id, extraction time, JSON data, meta, generation.

The data is the record as received, with the two things JSONB cannot hold made storable and
recorded in `_airbyte_meta`: NUL characters (removed, at any depth, keys included) and
NaN/Infinity (kept as the strings "NaN", "Infinity", "-Infinity").
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import msgspec

_ENCODER = msgspec.json.Encoder(decimal_format="number")

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
    into strings, and whether anything had to change. Unchanged containers are returned as
    they are."""
    if isinstance(value, str):
        return _storable_text(value)
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


def clean_record(
    record: dict[str, Any], renamed: Mapping[str, str] | None = None
) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """The record with NUL characters removed and NaN/Infinity made strings, and one
    `TRUNCATED` change per top-level property that needed it, naming the property (with its
    NUL characters removed, as JSONB holds it).

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
