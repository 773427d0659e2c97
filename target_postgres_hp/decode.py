"""One way in for a record: a stream's `RecordDecoder` turns it into what its batch stages
(the raw JSON text, the typed values and the changes made to fit them).

A RECORD line takes the fast way when it can (`records.RecordFields`: msgspec decodes the
record straight into the values of the stream's columns, and the record's JSON text is kept as
it came); a record the fast way cannot read (a missing key, a property name msgspec cannot
match) is decoded into a dict and taken the way of records from BATCH files and stream maps,
which cleans values JSONB cannot store. Either way a key that typing would NULL, or a missing
key, refuses the record (SPEC §6.3).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any

import msgspec

from target_postgres_hp.casting import RowCaster, RowFunction
from target_postgres_hp.errors import KeyMissing, KeyNotStorable
from target_postgres_hp.naming import shown_name, storable_key
from target_postgres_hp.rawdata import clean_record, data_json, unholdable_numbers
from target_postgres_hp.reader import _decode as read_json
from target_postgres_hp.records import RecordFields

#: What a record stages: its raw JSON text, the changes cleaning made (None: none), its typed
#: values with the changes typing made (None without a final table), and whether it deletes
#: its key (hard_delete).
Decoded = tuple[
    str | msgspec.Raw,
    list[dict[str, str]] | None,
    tuple[list[Any], list[dict[str, str]]] | None,
    bool,
]

_astuple = msgspec.structs.astuple


def _json_text(value: object) -> str:
    """A value as JSON text for a message, exact numbers unquoted."""
    if isinstance(value, Decimal):
        return str(value)
    return json.dumps(value, default=str, ensure_ascii=False)


class RecordDecoder:
    """Reads one stream's records (`fields` for the fast way, `caster` for the typed values;
    None when the stream has no final table)."""

    def __init__(
        self,
        stream: str,
        keys: list[str],
        fields: RecordFields,
        caster: RowCaster | None = None,
        markers: Sequence[tuple[str, int]] = (),
        *,
        raw_json: bool = True,
        renamed: Mapping[str, str] | None = None,
    ) -> None:
        self.stream = stream
        self.keys = keys
        #: The key a property whose name JSONB cannot hold is kept under in the cleaned
        #: record (`naming.renamed_keys`): what the caster reads and typing's changes name.
        self._renamed = dict(renamed or {})
        #: The key properties as the cleaned record and typing's changes name them.
        self.key_fields = frozenset(self._renamed.get(key, key) for key in keys)
        self._key_set = self.key_fields
        #: What typing's changes name a renamed property by: its name with NUL removed, as
        #: JSONB holds it (SPEC §4.4: the original property), not the key it is kept under.
        self._shown = {field: storable_key(prop) for prop, field in self._renamed.items()}
        #: The property each renamed key is kept for, to name it in a refusal.
        self._source = {field: prop for prop, field in self._renamed.items()}
        self._fields = fields
        self._caster = caster
        #: The deletion markers (property, position among the fast way's values).
        self._markers = [prop for prop, _ in markers]
        self._marker_positions = [position for _, position in markers]
        #: Whether the layout keeps the record's JSON (a raw table); else it is not made.
        self._raw_json = raw_json
        #: What the fast way decodes a record into: its JSON text when the layout keeps it,
        #: else straight the struct of its values (one pass over the line, see
        #: `records.FastRoutes`).
        self.record_type: Any = msgspec.Raw
        self.from_record: Callable[[Any, bool], Decoded | None] = self.from_text
        #: When `record_type` checks values (`RecordFields.strict`): the record type that
        #: does not, and its way in (see `records.FastRoutes.add`).
        self.lenient: tuple[Any, Callable[[Any, bool], Decoded | None]] | None = None
        if not raw_json and fields.struct is not None and caster is not None:
            self.record_type = fields.struct
            self.from_record = self._struct_way(fields.struct, caster.values_row, caster)
            if fields.strict is not None:
                self.lenient = (self.record_type, self.from_record)
                self.record_type = fields.strict
                self.from_record = self._struct_way(fields.strict, caster.typed_row, caster)

    def from_text(self, text: msgspec.Raw, short: bool) -> Decoded | None:
        """A record as the JSON text of its line (`short`: the line had at most
        `casting.SHORT_LINE` characters); None when it is not a JSON object, which the
        reader's slow way reports. This is the hot path of a load. A record that may hold a
        number NUMERIC cannot hold (which JSONB refuses: a shadowed duplicate key too) is
        read the dict way, which keeps such a number as its text."""
        values = None if unholdable_numbers(text) else self._fields.values(text)
        if values is None:
            record, _ = read_json(bytes(text))
            if not isinstance(record, dict):
                return None
            return self.from_dict(record, maybe_dirty=True)
        caster = self._caster
        if caster is None:
            return text, None, None, False
        typed = caster.row_of_values(values, short)
        if typed[1] and self._key_set:
            self._refuse_unstorable_key(typed[1], json.loads(bytes(text)).get)
        return text, None, typed, bool(self._marker_positions) and self._deletes(values)

    def _struct_way(
        self, struct: Any, values_row: RowFunction, caster: RowCaster
    ) -> Callable[[Any, bool], Decoded | None]:
        """The way in for a record the fast way decoded into `struct` (the struct of its
        values), in a layout that keeps no raw JSON; it returns None to leave the record to the
        slow way: a missing key, or a key its column cannot hold (the slow way says which,
        with its value). This is the hot path of a direct load."""
        key_positions = self._fields.key_positions
        json_texts = sorted(self._fields.json_texts)
        key_set = self._key_set
        nulled = caster.nulled
        deletes = self._deletes if self._marker_positions else None

        def from_struct(record: Any, short: bool) -> Decoded | None:
            if type(record) is not struct:
                return None
            values = _astuple(record)
            for position in key_positions:
                if values[position] is msgspec.UNSET:
                    return None
            for position in json_texts:
                # JSON text JSONB cannot hold: the slow way keeps such numbers as their text.
                if values[position] is not None and unholdable_numbers(values[position]):
                    return None
            row, bad = values_row(values, short)
            changes = nulled(row) if bad else []
            if changes and key_set:
                for change in changes:
                    if change["field"] in key_set:
                        return None
            return "", None, (row, changes), deletes is not None and deletes(values)

        return from_struct

    def _deletes(self, values: tuple[Any, ...]) -> bool:
        """Whether a record's values mark it deleted (hard_delete)."""
        return any(values[position] is not None for position in self._marker_positions)

    def from_dict(self, record: dict[str, Any], *, maybe_dirty: bool) -> Decoded:
        """A record already decoded (a slow-way line, a stream map's output, a BATCH file's
        record). `maybe_dirty` False promises it holds no NUL character, NaN/Infinity or lone
        surrogate (its line showed none), which skips the walk that would find them."""
        for key in self.keys:
            if key not in record:
                msg = (
                    f"record of stream {shown_name(self.stream)} has no value for key property"
                    f" {shown_name(key)}"
                )
                raise KeyMissing(msg)
        if maybe_dirty or self._renamed:
            data, changes = clean_record(record, self._renamed)
        else:
            data, changes = record, []
        caster = self._caster
        if caster is None:
            return data_json(data), changes, None, False
        typed = caster.row(data)
        if typed[1] and self._key_set:
            self._refuse_unstorable_key(typed[1], data.get)
        if typed[1] and self._shown:
            self.name_changes(typed[1])
        deletes = any(data.get(marker) is not None for marker in self._markers)
        return data_json(data) if self._raw_json else "", changes, typed, deletes

    def name_changes(self, changes: list[dict[str, str]]) -> list[dict[str, str]]:
        """Typing's `changes` (made by a caster of this stream, which names a renamed
        property by the key it is kept under) naming each property as `_airbyte_meta`
        does."""
        for change in changes:
            change["field"] = self._shown.get(change["field"], change["field"])
        return changes

    def _refuse_unstorable_key(
        self, changes: list[dict[str, str]], value_of: Callable[[str], object]
    ) -> None:
        """A key never becomes NULL by typing (SPEC §6.3): distinct keys that failed their cast
        would merge into one row. Such a record is refused, before it is staged."""
        for change in changes:
            prop = change["field"]
            if prop in self._key_set:
                value = _json_text(value_of(prop))
                msg = (
                    f"record of stream {shown_name(self.stream)} has key property"
                    f" {shown_name(self._source.get(prop, prop))} = {value},"
                    " which its key column cannot hold exactly (a key is never NULLed by"
                    " typing, or distinct keys would merge); fix the value at the source, or"
                    " change the key column's type"
                )
                raise KeyNotStorable(msg)
