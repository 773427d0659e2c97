"""Raw rows: ids, extraction time, NUL and NaN handling (SPEC §4.1, §9)."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from target_postgres_hp.naming import renamed_keys
from target_postgres_hp.rawdata import (
    RawRowBuilder,
    TimeOrderedIds,
    clean_record,
    data_json,
    make_storable,
)


def test_ids_are_uuid7_and_increase() -> None:
    ids = TimeOrderedIds()
    made = [ids.next() for _ in range(1000)]
    assert len(set(made)) == 1000
    assert made == sorted(made)
    parsed = uuid.UUID(made[0])
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122


def test_make_storable_removes_nul_everywhere() -> None:
    value = {"a\x00b": ["x\x00", {"k": "v\x00"}], "ok": 1}
    cleaned, changed = make_storable(value)
    assert changed
    assert cleaned == {"ab": ["x", {"k": "v"}], "ok": 1}


def test_make_storable_keeps_clean_values_as_they_are() -> None:
    value = {"a": [1, "b", {"c": Decimal("1.5")}]}
    cleaned, changed = make_storable(value)
    assert not changed
    assert cleaned is value


def test_make_storable_non_finite_numbers() -> None:
    cleaned, changed = make_storable([float("nan"), float("inf"), float("-inf"), Decimal("NaN")])
    assert changed
    assert cleaned == ["NaN", "Infinity", "-Infinity", "NaN"]


def test_row_keeps_numbers_exact_and_records_changes() -> None:
    builder = RawRowBuilder(sync_id=1700000000000)
    record = {
        "id": 2**70,
        "amount": Decimal("12345678901234567890.123"),
        "name": "a\x00b",
        "score": float("nan"),
        "text": "😀 ü",
    }
    cleaned, changes = clean_record(record)
    raw_id, extracted_at = builder.next_id(), builder.extracted_text("2024-01-02T03:04:05+02:00")
    data, meta = data_json(cleaned), builder.meta_json(changes)
    uuid.UUID(raw_id)
    assert datetime.fromisoformat(extracted_at) == datetime(
        2024, 1, 2, 1, 4, 5, tzinfo=timezone.utc
    )
    assert data == (
        '{"id":1180591620717411303424,"amount":12345678901234567890.123,'
        '"name":"ab","score":"NaN","text":"😀 ü"}'
    )
    assert json.loads(meta) == {
        "changes": [
            {"field": "name", "change": "TRUNCATED", "reason": "DESTINATION_SERIALIZATION_ERROR"},
            {"field": "score", "change": "TRUNCATED", "reason": "DESTINATION_SERIALIZATION_ERROR"},
        ],
        "sync_id": 1700000000000,
    }
    assert clean_record({"a": 1}) == ({"a": 1}, [])


def test_extracted_at_is_the_records_own_time_in_utc() -> None:
    builder = RawRowBuilder(sync_id=1)
    first = builder.extracted_at("2024-01-02T00:00:00Z")
    assert first == datetime(2024, 1, 2, tzinfo=timezone.utc)
    earlier = builder.extracted_at("2023-01-01T02:00:00+02:00")
    assert earlier == datetime(2023, 1, 1, tzinfo=timezone.utc)
    assert earlier.utcoffset() == timedelta(0)
    later = builder.extracted_at("2024-01-03T00:00:00")
    assert later == datetime(2024, 1, 3, tzinfo=timezone.utc)


def test_read_times_never_go_backwards() -> None:
    builder = RawRowBuilder(sync_id=1)
    moments = [builder.extracted_at(None) for _ in range(1000)]
    assert moments == sorted(moments)


def test_extracted_at_defaults_to_now() -> None:
    before = datetime.now(timezone.utc)
    moment = RawRowBuilder(sync_id=1).extracted_at(None)
    assert before <= moment <= datetime.now(timezone.utc) + timedelta(seconds=1)
    assert RawRowBuilder(sync_id=1).extracted_at("not a time") >= before


def truncated(field: str) -> dict[str, str]:
    return {"field": field, "change": "TRUNCATED", "reason": "DESTINATION_SERIALIZATION_ERROR"}


def test_a_key_holding_nul_never_takes_another_keys_value() -> None:
    renamed = renamed_keys(["a\x00b", "ab"])  # {"a\x00b": "ab_2"}
    record = {"a\x00b": "xy", "ab": "zz", "o": {"k\x00": 1}}
    assert clean_record(record, renamed) == (
        {"ab": "zz", "o": {"k": 1}, "ab_2": "xy"},
        [truncated("o"), truncated("ab")],
    )
    # Keys the schema does not name: cleaned, and suffixed rather than overwrite a value, nor
    # take the key a renamed property is kept under.
    record = {"x\x00": 1, "x": 2, "\x00x": 3, "a\x00\x00b": 4}
    assert clean_record(record, renamed) == (
        {"x": 2, "x_2": 1, "x_3": 3, "ab": 4},
        [truncated("x"), truncated("x"), truncated("ab")],
    )
    assert clean_record({"a\x00\x00b": 4, "a\x00b": 5}, {"a\x00b": "ab"}) == (
        {"ab": 5, "ab_2": 4},
        [truncated("ab"), truncated("ab")],
    )
