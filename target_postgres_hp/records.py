"""The fast way in for a RECORD line: its envelope and its record are decoded by msgspec
straight into the values the stream's columns need, in column order, with no dict in between.

Two decoders do it. `ENVELOPE` reads the message around the record and keeps the record as the
exact JSON text of the line (`msgspec.Raw`), which becomes `_airbyte_data` as it is: no
re-encoding. `RecordFields` then reads that text into one struct per stream whose fields are
the stream's properties; object and array columns are kept as their JSON text too, which is
what their JSONB column takes.

The fast way only takes lines that need nothing the slow way does: a record with a NUL
character, NaN/Infinity or a lone surrogate (none of which JSONB can store), a record that is
not an object, a missing key property, a stream with stream maps, or a stream with a property
name msgspec cannot match (one holding a quote, a backslash, a control character or a lone
surrogate) goes the slow way (`reader.LineReader`,
`target.TargetPostgresHP._process_record_message`), which cleans the record or says in one
sentence what is wrong with the line.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

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


class RecordFields:
    """Decodes one stream's records into their values in column order.

    `properties` are the stream's properties in column order. Those at `json_texts` are kept
    as their JSON text (`msgspec.Raw`): a missing one is None, JSON null the text `null`. No
    key property may be one, since a missing key must be told apart from a null one. `keys`
    are the key properties, which every record must have; those that are not properties are
    decoded after the others.
    """

    def __init__(self, properties: list[str], json_texts: frozenset[int], keys: list[str]) -> None:
        names = list(properties)
        for key in keys:
            if key not in names:
                names.append(key)
        self.key_positions = [names.index(key) for key in keys]
        if any(position in json_texts for position in self.key_positions):
            msg = "a key property cannot be decoded as JSON text"
            raise ValueError(msg)
        fields: list[tuple[str, Any, Any]] = []
        for position in range(len(names)):
            if position in self.key_positions:
                fields.append((f"f{position}", Any, msgspec.UNSET))
            elif position in json_texts:
                fields.append((f"f{position}", msgspec.Raw, None))
            else:
                fields.append((f"f{position}", Any, None))
        try:
            struct = msgspec.defstruct(
                "Record",
                fields,
                rename={f"f{position}": name for position, name in enumerate(names)},
                gc=False,
            )
        except (ValueError, UnicodeEncodeError):
            # msgspec matches a key to a field by the key's decoded text, but refuses field
            # names holding a quote, a backslash, a control character or a lone surrogate:
            # no record of this stream can be decoded the fast way.
            self._decode: Any = _slow_way
        else:
            self._decode = msgspec.json.Decoder(struct, float_hook=Decimal).decode
        self._values = msgspec.structs.astuple

    def values(self, text: msgspec.Raw) -> tuple[Any, ...] | None:
        """The record's values, or None when the slow way must take it: the record is not a
        JSON object (or holds a string msgspec refuses) or lacks a key property, or the stream
        has a property name msgspec cannot match."""
        try:
            values = self._values(self._decode(text))
        except msgspec.DecodeError:
            return None
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
