"""The fast way in for RECORD lines (records.py): it must give exactly what the slow way gives,
the dict decode and `RowCaster.row`, for every line it takes, and refuse the lines it cannot
take so the slow way handles them."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from target_postgres_hp.casting import (
    ARRAY,
    BOOLEAN,
    DATE,
    INTEGER,
    JSON_TEXT_COLUMNS,
    JSONB,
    NUMBER,
    OBJECT,
    SHORT_LINE,
    STRING,
    TIME,
    TIMESTAMP,
    TIMESTAMPTZ,
    TIMETZ,
    ColumnType,
    RowCaster,
    cast_for,
    cast_string,
)
from target_postgres_hp.rawdata import NumberText, SpelledNumber, unholdable_numbers
from target_postgres_hp.reader import _decode
from target_postgres_hp.records import (
    ENVELOPE,
    STRICT_REFUSALS,
    UNION_STREAMS,
    FastRoutes,
    RecordFields,
)

ALL_COLUMNS = [STRING, NUMBER, INTEGER, BOOLEAN, OBJECT, ARRAY, JSONB]
ALL_COLUMNS += [TIMESTAMPTZ, TIMESTAMP, TIMETZ, TIME, DATE]

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.decimals(allow_nan=False, allow_infinity=False)
    | st.sampled_from(
        [
            "",
            "x",
            "12",
            "-1.5e3",
            "0.0000001",
            "true",
            "NaN",
            "2024-01-02",
            "2024-01-02T03:04:05.1234567+01:00",
            "2024-01-02 03:04:05",
            "2024-02-30",
            "2023-W01-1",
            "2024-02-30T10:00:00Z",
            "2024-13-01 00:00:00+0530",
            "10:00:00",
            "10:00:00.9999995Z",
            "null",
            "é\\u00e9",
        ]
    )
)
#: Lines with a NUL escape go the slow way (the reader's rule), so keys here have none.
CLEAN = st.characters(exclude_characters="\x00", exclude_categories=("Cs",))
VALUES = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(CLEAN, max_size=4), children, max_size=3)
    ),
    max_leaves=8,
)


def plan_of(columns: list[tuple[str, ColumnType]]) -> list[Any]:
    return [(name, cast_for(column, non_finite_numbers=True), column) for name, column in columns]


def both_ways(
    columns: list[tuple[str, ColumnType]], line: bytes, keys: list[str]
) -> tuple[Any, Any]:
    """The typed row of a RECORD line the slow way and the fast way (None if refused)."""
    plan = plan_of(columns)
    json_texts = frozenset(
        index
        for index, (name, column) in enumerate(columns)
        if column in JSON_TEXT_COLUMNS and name not in keys
    )
    fields = RecordFields([name for name, _ in columns], json_texts, keys)
    # The values unpacked exactly (`width`), keys that are not columns after them.
    caster = RowCaster(plan, json_texts, width=fields.width)
    message, _ = _decode(line)
    slow = caster.row(message["record"])
    envelope = ENVELOPE.decode(line)
    values = fields.values(envelope.record)
    if values is None:
        return slow, None
    fast = caster.row_of_values(values, len(line) <= SHORT_LINE)
    return slow, fast


def record_line(record: dict[str, Any]) -> bytes:
    text = json.dumps(record, default=str, ensure_ascii=False)
    return b'{"type":"RECORD","stream":"s","record":' + text.encode() + b"}"


def same(slow: tuple[list[Any], Any], fast: tuple[list[Any], Any]) -> None:
    """Equal values of equal types; JSON texts compared as JSON, a number's text as the
    number PostgreSQL reads (value and scale), changes exactly."""
    assert len(slow[0]) == len(fast[0])
    for mine, theirs in zip(slow[0], fast[0], strict=True):
        if isinstance(mine, (int, Decimal)) and isinstance(theirs, str):
            assert type(mine) is not bool
            assert Decimal(theirs) == mine
            assert Decimal(theirs).as_tuple().exponent == Decimal(mine).as_tuple().exponent
        elif isinstance(mine, str) and isinstance(theirs, str) and mine != theirs:
            assert json.loads(mine, parse_float=Decimal) == json.loads(theirs, parse_float=Decimal)
        elif isinstance(mine, Decimal) and mine.is_nan():
            # NaN equals nothing, itself included: compare what it is instead.
            assert isinstance(theirs, Decimal)
            assert theirs.is_nan()
            assert theirs.is_signed() == mine.is_signed()
        else:
            assert mine == theirs
            assert type(mine) is type(theirs)
    assert slow[1] == fast[1]


def drawn_record(
    cells: list[tuple[ColumnType, Any]], data: st.DataObject
) -> tuple[list[tuple[str, ColumnType]], dict[str, Any]]:
    """Columns p0, p1... of the drawn types, and a record holding some of the drawn values."""
    columns = [(f"p{index}", column) for index, (column, _) in enumerate(cells)]
    present = data.draw(st.lists(st.booleans(), min_size=len(cells), max_size=len(cells)))
    record = {
        f"p{index}": value
        for index, ((_, value), keep) in enumerate(zip(cells, present, strict=True))
        if keep
    }
    return columns, record


@settings(max_examples=400)
@given(st.lists(st.tuples(st.sampled_from(ALL_COLUMNS), VALUES), max_size=8), st.data())
def test_fast_way_types_like_the_slow_way(
    cells: list[tuple[ColumnType, Any]], data: st.DataObject
) -> None:
    columns, record = drawn_record(cells, data)
    record["extra"] = {"not": "a column"}
    slow, fast = both_ways(columns, record_line(record), keys=[])
    assert fast is not None
    same(slow, fast)


def test_json_text_columns_keep_the_text_of_the_line() -> None:
    line = (
        b'{"type":"RECORD","stream":"s","record":{"id":7,"o":{"b":1.50,"a":[1, "x"]},'
        b'"arr":[{"k":null}],"any":"text","n":null}}'
    )
    columns = [("id", INTEGER), ("o", OBJECT), ("arr", ARRAY), ("any", JSONB), ("n", OBJECT)]
    slow, fast = both_ways(columns, line, keys=["id"])
    assert fast == ([7, '{"b":1.50,"a":[1, "x"]}', '[{"k":null}]', '"text"', None], [])
    same(slow, fast)


def test_json_text_of_the_wrong_kind_is_nulled_and_recorded() -> None:
    line = b'{"type":"RECORD","stream":"s","record":{"o":[1],"a":{"x":1},"j":null}}'
    columns = [("o", OBJECT), ("a", ARRAY), ("j", JSONB)]
    slow, fast = both_ways(columns, line, keys=[])
    assert fast is not None
    assert fast[0] == [None, None, None]
    assert [change["field"] for change in fast[1]] == ["o", "a"]
    same(slow, fast)


def test_numbers_stay_exact_and_long_lines_check_numeric_range() -> None:
    digits = "1." + "1" * 16400  # more fractional digits than NUMERIC holds
    line = ('{"type":"RECORD","stream":"s","record":{"n":' + digits + ',"m":2.50}}').encode()
    slow, fast = both_ways([("n", NUMBER), ("m", NUMBER)], line, keys=[])
    assert fast is not None
    assert fast[0] == [None, Decimal("2.50")]  # a long line's numbers are all decoded
    assert str(fast[0][1]) == "2.50"
    same(slow, fast)
    short = b'{"type":"RECORD","stream":"s","record":{"n":-0.0000001,"m":"2.50","e":1e999999}}'
    slow, fast = both_ways([("n", NUMBER), ("m", NUMBER), ("e", NUMBER)], short, keys=[])
    assert fast is not None
    assert fast[0] == ["-0.0000001", Decimal("2.50"), None]  # the literal as written
    assert [change["field"] for change in fast[1]] == ["e"]
    same(slow, fast)


@pytest.mark.parametrize(
    "record",
    [
        b"[1, 2]",
        b'"text"',
        b"null",
        b'{"name": "no id"}',
    ],
)
def test_records_the_fast_way_refuses(record: bytes) -> None:
    line = b'{"type":"RECORD","stream":"s","record":' + record + b"}"
    fields = RecordFields(["id", "name"], frozenset(), ["id"])
    assert fields.values(ENVELOPE.decode(line).record) is None


def test_a_null_key_is_a_value_and_keys_outside_the_schema_are_checked() -> None:
    fields = RecordFields(["id", "o"], frozenset({1}), ["id", "tenant"])
    assert fields.values(msgspec.Raw(b'{"id": null, "tenant": 3}')) == (None, None, 3)
    assert fields.values(msgspec.Raw(b'{"id": 1}')) is None
    with pytest.raises(ValueError, match="key property"):
        RecordFields(["o"], frozenset({0}), ["o"])
    # The row function takes the extra key's value and leaves it out of the row.
    line = b'{"type":"RECORD","stream":"s","record":{"id":5,"o":{"a":1},"tenant":3}}'
    slow, fast = both_ways([("id", INTEGER), ("o", OBJECT)], line, keys=["id", "tenant"])
    assert fast == ([5, '{"a":1}'], [])
    same(slow, fast)


@pytest.mark.parametrize(
    "line",
    [
        b'{"type":"RECORD","stream":"s","record":{"a":NaN}}',
        b'{"type":"RECORD","stream":"s","record":{"a":"\\ud800"}}',
        b'{"type":"RECORD","stream":"s","record":{"a":1}',
        b'{"type":5,"stream":"s","record":{}}',
        b'{"type":"RECORD","stream":["s"],"record":{}}',
    ],
)
def test_lines_the_envelope_leaves_to_the_slow_way(line: bytes) -> None:
    with pytest.raises(msgspec.DecodeError):
        ENVELOPE.decode(line)


#: Property names msgspec refuses to match: a quote, a backslash, a control character
#: (U+0000 to U+001F), a lone surrogate.
REFUSED_NAMES = ['a"b', "a\\b", "a\nb", "\x00", "tab\there", "\x1f", "\ud800", 'x"\\']


@pytest.mark.parametrize("name", REFUSED_NAMES)
@pytest.mark.parametrize("as_key", [False, True])
def test_names_msgspec_refuses_leave_the_stream_to_the_slow_way(name: str, as_key: bool) -> None:
    fields = RecordFields(["id", name], frozenset(), [name] if as_key else [])
    keyless = RecordFields([], frozenset(), [name])
    text = msgspec.Raw(json.dumps({"id": 1, name: 2}).encode())
    assert fields.values(text) is None
    assert keyless.values(text) is None


@pytest.mark.parametrize("ensure_ascii", [False, True])
def test_names_msgspec_takes_match_keys_written_with_escapes(ensure_ascii: bool) -> None:
    names = ["", "a", "\x7f", "é", "\u2028", "😀", "a/b", "ß" * 40, "A", "a b", "\U0010ffff"]
    record = {name: index for index, name in enumerate(names)}
    line = record_line(record).replace(b'"a/b"', b'"a\\/b"').replace(b'"a":', b'"\\u0061":')
    if ensure_ascii:
        line = b'{"type":"RECORD","stream":"s","record":' + json.dumps(record).encode() + b"}"
    assert b"\\u0061" in line or ensure_ascii
    columns = [(name, INTEGER) for name in names]
    slow, fast = both_ways(columns, line, keys=["a"])
    assert fast is not None
    assert fast == (list(range(len(names))), [])
    same(slow, fast)


@pytest.mark.parametrize(
    "record",
    [
        b'{"a": 1, "a": 2}',
        b'{"a": 1, "\\u0061": 2}',
        b'{"a": {"x": 1}, "a": [2], "o": {"k": 1, "k": {"k": 2}}, "o": {"k": 3, "k": 4}}',
        b'{"a": null, "a": 2, "o": [1], "o": {"k": 1}}',
    ],
)
def test_duplicate_keys_the_last_wins_both_ways(record: bytes) -> None:
    line = b'{"type":"RECORD","stream":"s","record":' + record + b"}"
    for a_column in (INTEGER, JSONB, STRING, ARRAY):
        columns = [("a", a_column), ("o", OBJECT)]
        slow, fast = both_ways(columns, line, keys=[])
        assert fast is not None
        same(slow, fast)
    slow, fast = both_ways([("a", STRING), ("o", STRING)], line, keys=["a"])
    assert fast is not None
    same(slow, fast)


NAMES = st.text(max_size=6) | st.sampled_from(["", "a", "A", '"', "\\", "\x00", "\ud800", "é"])


@settings(max_examples=300)
@given(
    st.lists(st.tuples(NAMES, st.sampled_from(ALL_COLUMNS)), max_size=6, unique_by=lambda c: c[0]),
    st.lists(st.tuples(NAMES, VALUES), max_size=8),
    st.data(),
)
def test_any_property_names_the_fast_way_takes_or_leaves_and_agrees(
    columns: list[tuple[str, ColumnType]], items: list[tuple[str, Any]], data: st.DataObject
) -> None:
    """Any names, keys written raw or escaped, duplicated keys: the fast way never raises,
    and what it takes it types like the slow way."""
    names = [name for name, _ in columns]
    keys = data.draw(st.lists(st.sampled_from(names), max_size=2)) if names else []
    keys_text = [json.dumps(key, ensure_ascii=data.draw(st.booleans())) for key, _ in items]
    values_text = [json.dumps(value, default=str) for _, value in items]
    members = [f"{key}: {value}" for key, value in zip(keys_text, values_text, strict=True)]
    line = ('{"type":"RECORD","stream":"s","record":{' + ", ".join(members) + "}}").encode(
        "utf-8", "surrogatepass"
    )
    try:
        message, _ = _decode(line)
    except ValueError:
        return  # not JSON (a raw lone surrogate): the reader's error, both ways
    try:
        envelope = ENVELOPE.decode(line)
    except msgspec.DecodeError:
        return  # a lone surrogate escape: the reader leaves the line to the slow way
    if RecordFields(names, frozenset(), keys).values(envelope.record) is None:
        return
    slow, fast = both_ways(columns, line, keys)
    assert fast is not None
    same(slow, fast)
    assert all(key in message["record"] for key in keys)


# --------------------------------------------------------------------------- FastRoutes


def _take(message: Any, line: str | bytes) -> bool:
    return True


def _route(*streams: str) -> FastRoutes:
    routes = FastRoutes()
    for stream in streams:
        routes.add(stream, msgspec.Raw, _take, _take)
    return routes


def _stream_of(routes: FastRoutes, line: bytes) -> str | None:
    """The stream whose handler the fast way picks for a line, or None (the slow way)."""
    assert routes.decode is not None
    try:
        message = routes.decode(line)
    except msgspec.DecodeError:
        return None
    for stream, kind in routes._messages.items():
        if type(message) is kind:
            return stream
    return None


@pytest.mark.parametrize("stream", ["users", "é", "日本", "😀", "", "a b", "t" * 300, "null", "1"])
@pytest.mark.parametrize("ascii_only", [True, False])
def test_fast_routes_pick_the_stream_of_a_line(stream: str, ascii_only: bool) -> None:
    """Whatever the stream's name, written as UTF-8 or as escapes, and whether it is the only
    stream or one of several, a line goes to its own stream's handler."""
    line = json.dumps(
        {"type": "RECORD", "stream": stream, "record": {"a": 1}}, ensure_ascii=ascii_only
    ).encode()
    assert _stream_of(_route(stream), line) == stream
    assert _stream_of(_route("other", stream, "z"), line) == stream


def test_fast_routes_leave_other_lines_to_the_envelope() -> None:
    """A line of an unrouted stream, a `stream` given twice with two values (json takes the
    last, msgspec's tag the first), a line without a stream: not the one-pass decoder's (the
    reader reads them with `ENVELOPE`, whose last `stream` wins, as in json)."""
    routes = _route("s0", "S0")
    assert _stream_of(routes, b'{"type":"RECORD","stream":"x","record":{}}') is None
    for first, last in (("s0", "S0"), ("S0", "s0"), ("s0", "x")):
        line = f'{{"type":"RECORD","stream":"{first}","stream":"{last}","record":{{}}}}'
        assert _stream_of(routes, line.encode()) is None
    same = b'{"type":"RECORD","stream":"s0","stream":"s0","record":{}}'
    assert _stream_of(routes, same) == "s0"
    assert _stream_of(routes, b'{"type":"STATE","value":{}}') is None
    # A name a NUL would select is never on a line that reaches the decoder, nor routable.
    assert _stream_of(routes, b'{"type":"RECORD","stream":"\\u0000no stream","record":{}}') is None


def test_fast_routes_follow_added_and_removed_streams() -> None:
    routes = _route("a")
    line_b = b'{"type":"RECORD","stream":"b","record":{}}'
    assert _stream_of(routes, line_b) is None
    routes.add("b", msgspec.Raw, _take, _take)
    assert _stream_of(routes, line_b) == "b"
    routes.remove("b")
    assert _stream_of(routes, line_b) is None
    assert "b" not in routes.text_handlers
    routes.remove("a")
    assert routes.decode is None


def test_fast_routes_decode_the_latest_streams_in_one_pass() -> None:
    """The one-pass decoder knows the last `UNION_STREAMS` streams routed; the lines of
    older ones keep their handler for the envelope's way."""
    names = [f"s{number}" for number in range(UNION_STREAMS + 8)]
    routes = _route(*names)
    for position, name in enumerate(names):
        line = f'{{"type":"RECORD","stream":"{name}","record":{{}}}}'.encode()
        newest = position >= len(names) - UNION_STREAMS
        assert _stream_of(routes, line) == (name if newest else None)
        assert name in routes.text_handlers


# --------------------------------------------------------------------------- checked struct


def _typed(columns: list[tuple[str, ColumnType]]) -> dict[int, Any]:
    return {
        index: column.decodes_as
        for index, (_, column) in enumerate(columns)
        if column.decodes_as is not None
    }


def _kept_as_is(column: ColumnType, value: Any) -> bool:
    """Whether the column keeps a value as it is, without its cast (`ColumnType.keeps`)."""
    if value is None:
        return True
    if type(value) is not column.keeps:
        return False
    if column.keeps_range is not None:
        low, high = column.keeps_range
        return bool(low <= value <= high)
    return True


@settings(max_examples=400)
@given(st.lists(st.tuples(st.sampled_from(ALL_COLUMNS), VALUES), max_size=8), st.data())
def test_the_checked_struct_types_like_the_slow_way(
    cells: list[tuple[ColumnType, Any]], data: st.DataObject
) -> None:
    """`RecordFields.strict` takes a record exactly when every value of a column with a
    `decodes_as` is one the column keeps as it is, and then `RowCaster.typed_row` types it as
    the slow way does; the records it refuses go to the struct that takes any value."""
    columns, record = drawn_record(cells, data)
    line = record_line(record)
    names = [name for name, _ in columns]
    json_texts = frozenset(
        index for index, (_, column) in enumerate(columns) if column in JSON_TEXT_COLUMNS
    )
    fields = RecordFields(names, json_texts, [], _typed(columns))
    caster = RowCaster(plan_of(columns), json_texts, fields.typed, fields.width)
    if not fields.typed:
        assert fields.strict is None
        return
    assert fields.strict is not None
    # Values as the line carries them (json.dumps turned a Decimal into a JSON number).
    carried = json.loads(line)["record"]
    takes = all(_kept_as_is(columns[index][1], carried.get(names[index])) for index in fields.typed)
    decoder = msgspec.json.Decoder(fields.strict, float_hook=Decimal)
    text = ENVELOPE.decode(line).record
    try:
        decoded = decoder.decode(text)
    except msgspec.ValidationError:
        assert not takes
        return
    assert takes
    slow = caster.row(_decode(line)[0]["record"])
    fast = caster.typed_row(msgspec.structs.astuple(decoded), len(line) <= SHORT_LINE)
    same(slow, (fast[0], caster.nulled(fast[0]) if fast[1] else []))


def test_the_checked_struct_leaves_keys_and_json_texts_unchecked() -> None:
    """A key (whose absence must be told apart) and a JSON-text column are never typed."""
    fields = RecordFields(["id", "n", "o"], frozenset({2}), ["id"], {0: int, 1: str, 2: str})
    assert fields.typed == frozenset({1})
    assert fields.strict is not None
    decoder = msgspec.json.Decoder(fields.strict)
    assert decoder.decode(b'{"id":"x","n":"a","o":{"k":1}}').__struct_fields__
    with pytest.raises(msgspec.ValidationError):
        decoder.decode(b'{"id":1,"n":5}')


def test_fast_routes_take_the_lenient_struct_after_refusals() -> None:
    """A stream whose lines the checked struct keeps refusing moves to the lenient one, so
    that its lines are no longer decoded twice; other streams keep theirs."""
    strict = msgspec.defstruct("Strict", [("n", int)])
    lenient = msgspec.defstruct("Lenient", [("n", Any)])

    def strict_handler(message: Any, line: str | bytes) -> bool:
        return True

    def lenient_handler(message: Any, line: str | bytes) -> bool:
        return True

    routes = FastRoutes()
    routes.add("s", strict, strict_handler, _take, (lenient, lenient_handler))
    routes.add("t", strict, strict_handler, _take, (lenient, lenient_handler))
    good = b'{"type":"RECORD","stream":"s","record":{"n":1}}'
    bad = b'{"type":"RECORD","stream":"s","record":{"n":"x"}}'
    assert routes.decode is not None
    assert type(routes.decode(good).record) is strict
    with pytest.raises(msgspec.ValidationError):
        routes.decode(bad)
    for _ in range(STRICT_REFUSALS - 1):
        routes.refused("s")
    assert routes.handlers[type(routes.decode(good))] is strict_handler
    routes.refused("s")
    message = routes.decode(bad)
    assert type(message.record) is lenient
    assert routes.handlers[type(message)] is lenient_handler
    assert routes.text_handlers["s"] is _take
    other = routes.decode(b'{"type":"RECORD","stream":"t","record":{"n":1}}')
    assert type(other.record) is strict
    routes.refused("s")  # a stream already lenient stays as it is
    assert type(routes.decode(bad).record) is lenient


@pytest.mark.parametrize(
    ("column", "text", "takes"),
    [
        (INTEGER, "9223372036854775807", True),
        (INTEGER, "-9223372036854775808", True),
        (INTEGER, "9223372036854775808", False),
        (INTEGER, "18446744073709551615", False),
        (INTEGER, "-9223372036854775809", False),
        (INTEGER, "1.0", False),
        (INTEGER, "1e3", False),
        (INTEGER, '"1"', False),
        (INTEGER, "true", False),
        (BOOLEAN, "false", True),
        (BOOLEAN, "0", False),
        (BOOLEAN, '"true"', False),
        (STRING, '"x"', True),
        (STRING, "5", False),
        (STRING, "true", False),
        (STRING, "[]", False),
    ],
)
@pytest.mark.parametrize("null_too", [False, True])
def test_the_checked_struct_at_the_edges(
    column: ColumnType, text: str, takes: bool, null_too: bool
) -> None:
    """The edges of what a column keeps as it is: BIGINT's range (msgspec reads integers up
    to 2**64 - 1), numbers and strings standing for integers, booleans and strings of other
    types. Whatever the checked struct refuses, the slow way casts."""
    columns = [("v", column), ("w", column)]
    fields = RecordFields(["v", "w"], frozenset(), [], _typed(columns))
    assert fields.strict is not None
    decoder = msgspec.json.Decoder(fields.strict, float_hook=Decimal)
    other = "null" if null_too else ""
    record = f'{{"v":{text}' + (f',"w":{other}}}' if other else "}")
    if takes:
        decoded = msgspec.structs.astuple(decoder.decode(record.encode()))
        assert decoded[0] == json.loads(text)
        assert decoded[1] is None
    else:
        with pytest.raises(msgspec.ValidationError):
            decoder.decode(record.encode())


def test_fast_routes_count_no_refusal_of_a_stream_outside_the_window() -> None:
    """A stream the one-pass decoder does not know (more than `UNION_STREAMS` were routed
    after it) has its lines refused for their tag: that says nothing of its values, so it
    keeps its checked struct for when it is routed again."""
    strict = msgspec.defstruct("Strict", [("n", int)])
    lenient = msgspec.defstruct("Lenient", [("n", Any)])
    routes = FastRoutes()
    routes.add("old", strict, _take, _take, (lenient, _take))
    for number in range(UNION_STREAMS):
        routes.add(f"s{number}", msgspec.Raw, _take, _take)
    assert _stream_of(routes, b'{"type":"RECORD","stream":"old","record":{"n":1}}') is None
    for _ in range(STRICT_REFUSALS):
        routes.refused("old")
    assert routes._lenient["old"] == (lenient, _take)
    assert routes._refused.get("old") is None


# --- numbers PostgreSQL cannot hold, and number spellings (SPEC §4.4, §9) -------------------

_NUMERIC_LIMITS = st.sampled_from(
    [
        "1e200000",
        "-1E+200000",
        "1e-20000",
        "1e131072",
        "1e131071",
        "9.99e131071",
        "1e-16383",
        "1.5e-16383",
        "1.00e-16381",
        "1.000e-16381",
        "0e-16384",
        "1e99999999999999999999",
        "1e0005",
        "1e-999",
        "1.5",
        "-0",
        "42",
    ]
)


def _beyond_numeric(text: str) -> bool:
    """The oracle: PostgreSQL's NUMERIC holds 131072 digits before the point, 16383 after
    (as written: `1.000e-16381` has 16384)."""
    try:
        number = Decimal(text)
    except ArithmeticError:
        return True
    exponent = number.as_tuple().exponent
    assert isinstance(exponent, int)
    return number.adjusted() >= 131072 or -exponent > 16383


#: (JSON text of a value, the number literal it holds or None).
_HOLDING = (
    _NUMERIC_LIMITS.map(lambda text: (text, text))
    | _NUMERIC_LIMITS.map(lambda text: (f"[1, {text}]", text))
    | _NUMERIC_LIMITS.map(lambda text: (f'{{"in":{text}}}', text))
    | st.sampled_from(['"550e8400-e29b"', '"mike-32651"', '"a1e99999"', '"0e12345"']).map(
        lambda text: (text, None)
    )
)


@given(
    st.lists(st.tuples(st.sampled_from(['"k"', '"a b"', '"x1"']), _HOLDING), max_size=4),
    st.sampled_from(["", " ", "\n "]),
)
def test_lines_holding_numbers_numeric_cannot_hold_are_told(
    members: list[tuple[str, tuple[str, str | None]]], space: str
) -> None:
    """`rawdata.unholdable_numbers` sends every line that holds a number NUMERIC cannot hold
    (at any depth) the slow way, and no line whose numbers NUMERIC holds (strings that look like
    exponents are not numbers)."""
    record = "{" + ",".join(f"{key}:{space}{value}" for key, (value, _) in members) + "}"
    line = '{"type":"RECORD","stream":"s","record":' + record + "}"
    numbers = [number for _, (_, number) in members if number is not None]
    assert unholdable_numbers(line.encode()) == any(map(_beyond_numeric, numbers)), line
    assert unholdable_numbers(line) == unholdable_numbers(line.encode())


def test_long_digit_runs_take_the_slow_way() -> None:
    """Without an exponent, only a long run of digits can be beyond NUMERIC (or beyond what
    msgspec reads as an int)."""
    assert unholdable_numbers(b'{"a":0.' + b"1" * 16384 + b"}")
    assert unholdable_numbers(b'{"a":' + b"9" * 5000 + b"}")
    assert not unholdable_numbers(b'{"a":"' + b"x" * 5000 + b'", "b": 1.5}')


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        ("1e200000", NumberText, "1e200000"),
        ("-1E+200000", NumberText, "-1E+200000"),
        ("1e-20000", NumberText, "1e-20000"),
        ("1e99999999999999999999", NumberText, "1e99999999999999999999"),
        ("1e400", SpelledNumber, "1e400"),
        ("1E5", SpelledNumber, "1E5"),
        ("0.0000001", SpelledNumber, "0.0000001"),
        ("1.50", Decimal, "1.50"),
        ("0.000001", Decimal, "0.000001"),
        ("-0.0", Decimal, "-0.0"),
    ],
)
def test_the_general_way_keeps_a_numbers_text_where_a_decimal_would_not(
    text: str, kind: type, value: str
) -> None:
    """The reader's general way reads a number into a Decimal that keeps its text when `str()`
    would not give it back (a VARCHAR column takes it as written), and a number NUMERIC cannot
    hold as its text; the stream's decoder reads a record the same way."""
    decoded, dirty = _decode(('{"n": ' + text + "}").encode())
    number = decoded["n"]
    assert type(number) is kind
    assert dirty is (kind is NumberText)
    shown = number if kind is NumberText else getattr(number, "text", str(number))
    assert shown == value
    assert cast_string(number) == value
