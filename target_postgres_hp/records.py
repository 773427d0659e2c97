"""The fast way in for a RECORD line: its envelope and its record are decoded by msgspec
straight into the values the stream's columns need, in column order, with no dict in between.

`FastRoutes` decodes a line's envelope with one decoder for the streams that take the fast
way: a union of one message struct per stream, tagged by the stream's name. A stream with a raw
table keeps its record as the exact JSON text of the line (`msgspec.Raw`), which becomes
`_airbyte_data` as it is: no re-encoding; `RecordFields` then reads that text into one struct per
stream whose fields are the stream's properties. A stream without one (the direct layout)
decodes its record into that struct in the same pass as the envelope. A line that decoder
refuses is read by `ENVELOPE`, its record kept as JSON text. Either way object and array
columns are kept as their JSON text, which is what their JSONB column takes.

The fast way only takes lines that need nothing the slow way does: a record with a NUL
character, NaN/Infinity or a lone surrogate (none of which JSONB can store), a record that is
not an object, a missing key property, a stream with stream maps, or a stream with a property
name msgspec cannot match (one holding a quote, a backslash, a control character or a lone
surrogate) goes the slow way (`reader.LineReader`,
`target.TargetPostgresHP._process_record_message`), which cleans the record or says in one
sentence what is wrong with the line.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, Optional, Union

import msgspec
from psycopg.adapt import Dumper


class Envelope(msgspec.Struct, gc=False):
    """A Singer message's type and, for a RECORD, what the target reads of it."""

    type: str
    stream: str | None = None
    #: None when the message has no record; JSON null arrives as the text `null`.
    record: msgspec.Raw = None  # type: ignore[assignment]
    time_extracted: Any = None
    version: Any = None


ENVELOPE = msgspec.json.Decoder(Envelope, float_hook=Decimal)

#: Takes a RECORD line's decoded message and the line; False leaves the line to the slow way.
FastHandler = Callable[[Any, "str | bytes"], bool]

#: A member no line can select (a stream name holding NUL is written with a `\u0000` escape,
#: and such lines never reach the fast way). With it the union always has two members:
#: msgspec 0.22 refuses a non-ASCII tag when the only member of a union has it.
_NO_STREAM = msgspec.defstruct(
    "NoStream", [("type", str)], tag_field="stream", tag="\x00no stream", gc=False
)


#: How many streams the one-pass decoder knows at most: the streams routed last. Lines of
#: other routed streams are read by `ENVELOPE` (their record as JSON text), as are lines the
#: one-pass decoder refuses, so that the decoder is not rebuilt for every one of thousands
#: of streams.
UNION_STREAMS = 32

#: How many lines of a stream the one-pass decoder may refuse for a value its checked record
#: type does not take before the stream is decoded with no check (`FastRoutes.add`).
STRICT_REFUSALS = 256


class FastRoutes:
    """The streams whose RECORD lines take the fast way, and one decoder for most of them.

    Each stream has a message struct tagged by its name (the `stream` member), whose `record`
    is of the type its decoder takes (`msgspec.Raw`, or the stream's `RecordFields.struct`),
    with its handler, and a handler for its line read by `ENVELOPE` (`text_handlers`).
    `decode` reads a line into the message of its stream in one pass (the last
    `UNION_STREAMS` streams routed); it raises `msgspec.DecodeError` for a line of any other
    stream, or of any other shape (a `stream` given twice with two values among them), which
    the reader then reads with `ENVELOPE`. None while no stream takes the fast way.
    """

    def __init__(self) -> None:
        self._messages: dict[str, type] = {}
        #: The handler of each stream's message struct.
        self.handlers: dict[type, FastHandler] = {}
        #: Per stream, the handler of its line read by `ENVELOPE`.
        self.text_handlers: dict[str, FastHandler] = {}
        self.decode: Callable[[str | bytes], Any] | None = None
        #: Per stream whose record type checks values, the record type and handler that do
        #: not, and how many of its lines the check refused.
        self._lenient: dict[str, tuple[Any, FastHandler]] = {}
        self._refused: dict[str, int] = {}
        #: The streams the current `decode` knows (the last `UNION_STREAMS` routed).
        self._in_union: frozenset[str] = frozenset()

    def add(
        self,
        stream: str,
        record_type: Any,
        handler: FastHandler,
        text_handler: FastHandler,
        lenient: tuple[Any, FastHandler] | None = None,
    ) -> None:
        """Route the RECORD lines of `stream`, their record decoded as `record_type`. When
        that type checks values (`RecordFields.strict`), `lenient` is the record type and
        handler that take any value: the stream moves to them once `STRICT_REFUSALS` of its
        lines failed the check (`refused`), so that a stream whose values seldom pass it is
        not decoded twice a line."""
        self.remove(stream)
        self.text_handlers[stream] = text_handler
        if lenient is not None:
            self._lenient[stream] = lenient
        self._rebuild()
        try:
            message = msgspec.defstruct(
                "RecordMessage",
                [
                    ("type", str),
                    ("record", record_type, None),
                    ("time_extracted", Any, None),
                    ("version", Any, None),
                ],
                tag_field="stream",
                tag=stream,
                gc=False,
            )
        except (ValueError, UnicodeEncodeError):  # pragma: no cover - a tag msgspec refuses
            return  # the stream's lines are read by ENVELOPE
        self._messages[stream] = message
        self.handlers[message] = handler

    def remove(self, stream: str) -> None:
        """Leave the RECORD lines of `stream` to the slow way."""
        self.text_handlers.pop(stream, None)
        self._lenient.pop(stream, None)
        self._refused.pop(stream, None)
        message = self._messages.pop(stream, None)
        if message is not None:
            del self.handlers[message]
        self._rebuild()

    def refused(self, stream: str) -> None:
        """Count a line of `stream` that `decode` refused (a value its record type does not
        take, or any other shape), which `ENVELOPE` then read. A stream outside the decoder's
        window is not counted: its lines are refused for their tag, not their values."""
        if stream not in self._lenient or stream not in self._in_union:
            return
        refused = self._refused[stream] = self._refused.get(stream, 0) + 1
        if refused >= STRICT_REFUSALS:
            record_type, handler = self._lenient[stream]
            self.add(stream, record_type, handler, self.text_handlers[stream])

    def _rebuild(self) -> None:
        """Make the decoder again when it is first needed: a run that sends its SCHEMA
        messages together builds it once, not once per stream."""
        self.decode = self._decode_after_change if self.text_handlers else None

    def _decode_after_change(self, line: str | bytes) -> Any:
        streams = list(self._messages)[-UNION_STREAMS:]
        self._in_union = frozenset(streams)
        types = (_NO_STREAM, *(self._messages[stream] for stream in streams))
        decode = msgspec.json.Decoder(Union[types], float_hook=Decimal).decode  # noqa: UP007
        self.decode = decode
        return decode(line)


class RecordFields:
    """Decodes one stream's records into their values in column order.

    `properties` are the stream's properties in column order. Those at `json_texts` are kept
    as their JSON text (`msgspec.Raw`): a missing one is None, JSON null the text `null`. No
    key property may be one, since a missing key must be told apart from a null one. `keys`
    are the key properties, which every record must have; those that are not properties are
    decoded after the others. `typed` gives, for some of the other positions, the msgspec type
    of the values their column keeps as they are (`pgtypes.ColumnType.decodes_as`), and
    `reads` the type of the values the others take (`pgtypes.ColumnType.reads_as`; any value
    where it gives none): a record holding another value there is left to the slow way.
    """

    def __init__(
        self,
        properties: list[str],
        json_texts: frozenset[int],
        keys: list[str],
        typed: Mapping[int, Any] | None = None,
        reads: Mapping[int, Any] | None = None,
    ) -> None:
        names = list(properties)
        for key in keys:
            if key not in names:
                names.append(key)
        self.key_positions = [names.index(key) for key in keys]
        #: The positions whose values are kept as JSON text.
        self.json_texts = json_texts
        #: How many values a record decodes into: its properties', then its keys' that are
        #: not properties.
        self.width = len(names)
        if any(position in json_texts for position in self.key_positions):
            msg = "a key property cannot be decoded as JSON text"
            raise ValueError(msg)
        typed = {
            position: kind
            for position, kind in (typed or {}).items()
            if position not in self.key_positions and position not in json_texts
        }
        #: The positions `strict` decodes as their `typed` type.
        self.typed = frozenset(typed)
        fields: list[tuple[str, Any, Any]] = []
        strict_fields: list[tuple[str, Any, Any]] = []
        reads = reads or {}
        for position in range(len(names)):
            read = reads.get(position, Any)
            if position in self.key_positions:
                read = read if read is Any else Union[read, msgspec.UnsetType]  # noqa: UP007
                field: tuple[str, Any, Any] = (f"f{position}", read, msgspec.UNSET)
            elif position in json_texts:
                field = (f"f{position}", msgspec.Raw, None)
            else:
                field = (f"f{position}", read, None)
            fields.append(field)
            if position in typed:
                field = (f"f{position}", Optional[typed[position]], None)  # noqa: UP045
            strict_fields.append(field)
        rename = {f"f{position}": name for position, name in enumerate(names)}
        #: The struct a record decodes into (None when msgspec cannot match a property name).
        self.struct: type | None = None
        #: The same with the `typed` values checked by the decoder, which refuses a record
        #: holding any other value there (None when nothing is typed, or with `struct`).
        self.strict: type | None = None
        try:
            struct = msgspec.defstruct("Record", fields, rename=rename, gc=False)
        except (ValueError, UnicodeEncodeError):
            # msgspec matches a key to a field by the key's decoded text, but refuses field
            # names holding a quote, a backslash, a control character or a lone surrogate:
            # no record of this stream can be decoded the fast way.
            self._decode: Any = _slow_way
        else:
            self.struct = struct
            self._decode = msgspec.json.Decoder(struct, float_hook=Decimal).decode
            if typed:
                self.strict = msgspec.defstruct(
                    "TypedRecord", strict_fields, rename=rename, gc=False
                )
        self._values = msgspec.structs.astuple

    def values(self, text: msgspec.Raw) -> tuple[Any, ...] | None:
        """The record's values, or None when the slow way must take it: the record is not a
        JSON object (or holds a string msgspec refuses) or lacks a key property, or the stream
        has a property name msgspec cannot match."""
        try:
            record = self._decode(text)
        except msgspec.DecodeError:
            return None
        return self.values_of(record)

    def values_of(self, record: Any) -> tuple[Any, ...] | None:
        """The values of a record already decoded into `struct`, or None when it lacks a key
        property."""
        values = self._values(record)
        for position in self.key_positions:
            if values[position] is msgspec.UNSET:
                return None
        return values


def _slow_way(text: msgspec.Raw) -> Any:
    """The decoder of a stream whose records msgspec cannot decode: it leaves every one to
    the slow way."""
    msg = "a property name msgspec cannot match"
    raise msgspec.DecodeError(msg)


class JsonTextDumper(Dumper):
    """Writes a `msgspec.Raw`, JSON text as it came in the line, into a COPY as its bytes: no
    decoding to str and encoding back (registered on every connection, see
    `connection.Database.connect`)."""

    def dump(self, obj: Any) -> bytes:
        """The JSON text's UTF-8 bytes (msgspec has checked they are UTF-8)."""
        return bytes(obj)
