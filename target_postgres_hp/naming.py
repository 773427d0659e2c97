"""Identifiers: raw-style names for raw tables and their schema, within PostgreSQL's 63 bytes.

Raw-style names are lower-case, hold only `a-z`, digits and `_`, and never start with a digit,
so they never need quoting. A name longer than 63 bytes is cut and ends with a short hash of
the whole original, so two long names never collide by truncation.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

MAX_IDENTIFIER_BYTES = 63
HASH_LENGTH = 8

_NOT_RAW = re.compile(r"[^a-z0-9_]")
_UNDERSCORE_RUN = re.compile(r"_+")


def short_hash(text: str) -> str:
    """A stable 8-hex-digit digest of `text`."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:HASH_LENGTH]


def fit(name: str, original: str, limit: int = MAX_IDENTIFIER_BYTES) -> str:
    """`name` if it fits in `limit` UTF-8 bytes, else its longest prefix on a character
    boundary followed by `_` and a hash of `original`."""
    if len(name.encode("utf-8")) <= limit:
        return name
    suffix = f"_{short_hash(original)}"
    budget = limit - len(suffix)
    prefix = name.encode("utf-8")[:budget].decode("utf-8", errors="ignore")
    return prefix + suffix


def raw_identifier(name: str) -> str:
    """Lower-case `name`, replace every character but a-z, 0-9 and `_` with `_`, prefix a
    leading digit with `_`, and fit it in 63 bytes."""
    cleaned = _NOT_RAW.sub("_", name.lower())
    if not cleaned or cleaned[0].isdigit():
        cleaned = f"_{cleaned}"
    return fit(cleaned, name)


def raw_table_name(namespace: str, stream: str) -> str:
    """`<namespace>_raw__stream_<stream>`: the separator grows past the longest run of
    underscores in either part, so the split between namespace and stream stays unambiguous."""
    longest_run = max(
        (len(run) for run in _UNDERSCORE_RUN.findall(f"{namespace}{stream}")), default=0
    )
    separator = "_raw" + "_" * max(2, longest_run + 1) + "stream_"
    return raw_identifier(f"{namespace}{separator}{stream}")


@dataclass(frozen=True)
class StreamName:
    """A Singer stream name split into its namespace (schema part) and table part."""

    namespace: str | None
    table: str


def split_stream_name(stream_name: str) -> StreamName:
    """`schema-table` and `db-schema-table` carry a namespace; any other name does not."""
    parts = stream_name.split("-")
    if len(parts) == 2 and all(parts):
        return StreamName(namespace=parts[0], table=parts[1])
    if len(parts) == 3 and all(parts):
        return StreamName(namespace=parts[1], table=parts[2])
    return StreamName(namespace=None, table=stream_name)


NamespaceDefinition = Literal["source", "destination", "custom"]
NAMESPACE_DEFINITIONS: tuple[NamespaceDefinition, ...] = ("source", "destination", "custom")
#: What `namespace_format` replaces with the stream's namespace.
SOURCE_NAMESPACE = "${SOURCE_NAMESPACE}"


@dataclass(frozen=True)
class Placement:
    """Where a stream's final table goes, before conformance: its schema and table name as
    text. The raw table's name is made from the same two (SPEC §4.1: raw names follow their
    final table)."""

    schema: str
    table: str

    @property
    def final_schema(self) -> str:
        return final_identifier(self.schema)

    @property
    def final_table(self) -> str:
        """The final table's name unless another stream holds it (then a suffix is added)."""
        return final_identifier(self.table)

    @property
    def raw_table(self) -> str:
        return raw_table_name(self.schema, self.table)


def place_stream(
    stream_name: str,
    *,
    definition: NamespaceDefinition,
    namespace_format: str,
    default_schema: str,
    prefix: str,
    ignore_namespace: bool,
) -> Placement:
    """Where a stream's final table goes (SPEC §6.4).

    `source` puts it in the stream's namespace, `destination` in `default_schema`, `custom` in
    `namespace_format` with the namespace put in; a stream without a namespace always goes to
    `default_schema`. The table is named after the stream without its namespace, behind
    `prefix`. With `ignore_namespace` no stream has a namespace: the table is named after the
    whole stream name, so two namespaces' streams still never share a table.
    """
    parts = split_stream_name(stream_name)
    namespace, table = parts.namespace, parts.table
    if ignore_namespace:
        namespace, table = None, stream_name
    if namespace is None or definition == "destination":
        schema = default_schema
    elif definition == "custom":
        schema = namespace_format.replace(SOURCE_NAMESPACE, namespace)
    else:
        schema = namespace
    return Placement(schema=schema, table=f"{prefix}{table}")


def shown_name(name: str) -> str:
    """A stream or property name as a log line shows it: as it is, or quoted (with escapes)
    when it is empty, starts or ends with a space, or holds a character that does not
    print, so that `""`, `" "` and `"_"` read apart."""
    if name and name.isprintable() and name == name.strip():
        return name
    return repr(name)


def suffixed_from(name: str, conformed: str) -> bool:
    """True when `name` is `conformed` itself or `conformed` with a collision suffix
    (`with_suffix`): the names `assign_names` can give a source that conforms to
    `conformed`."""
    if name == conformed:
        return True
    base, _, number = name.rpartition("_")
    return (
        bool(base)
        and number.isascii()
        and number.isdigit()
        and with_suffix(conformed, int(number)) == name
    )


def final_identifier(name: str) -> str:
    """A final-table, schema or column name: case kept, every character but a letter (any
    script), a digit or `_` replaced with `_`, fitted in 63 bytes. Always quoted in SQL."""
    cleaned = "".join(
        char if char == "_" or char.isalpha() or char.isdecimal() else "_" for char in name
    )
    return fit(cleaned or "_", name)


def with_suffix(name: str, number: int, limit: int = MAX_IDENTIFIER_BYTES) -> str:
    """`name` followed by `_<number>`, cut on a character boundary so the whole fits."""
    suffix = f"_{number}"
    budget = limit - len(suffix)
    prefix = name.encode("utf-8")[:budget].decode("utf-8", errors="ignore")
    return prefix + suffix


def storable_key(name: str) -> str:
    """A property name as JSONB can hold it: NUL characters removed, a lone surrogate (which
    UTF-8 cannot hold) replaced by U+FFFD, as `rawdata.clean_record` cleans a record's keys."""
    name = name.replace("\x00", "")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return name.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return name


def renamed_keys(properties: Iterable[str]) -> dict[str, str]:
    """The key under which the value of each property whose name JSONB cannot hold (a NUL
    character, a lone surrogate) is kept in a cleaned record, `_airbyte_data` and
    `_airbyte_meta` (SPEC §9: NUL removal never separates a value from its column).

    Its cleaned name (`storable_key`), unless another property is named so or claims it
    first (in code point order, whatever the schema's order): then that name with the first
    free `_<n>` suffix. A property JSONB can hold is never renamed, so a record holding no
    such key stays as it came. Properties JSONB can hold are not in the result."""
    names = set(properties)
    taken = set(names)
    renamed: dict[str, str] = {}
    for name in sorted(names):
        key = storable_key(name)
        if key == name:
            continue
        candidate, number = key, 2
        while candidate in taken:
            candidate = f"{key}_{number}"
            number += 1
        renamed[name] = candidate
        taken.add(candidate)
    return renamed


def derived_name(base: str, purpose: str) -> str:
    """The name of an object made from another's name (an index, a temp table): the base is
    shortened first so the purpose suffix survives PostgreSQL's 63-byte limit."""
    suffix = f"_{purpose}"
    return fit(base, base, MAX_IDENTIFIER_BYTES - len(suffix.encode("utf-8"))) + suffix


def assign_names(
    wanted: list[tuple[str, str]], owners: dict[str, str | None], reserved: frozenset[str]
) -> dict[str, str]:
    """Give every source name (a property, a stream) a unique identifier.

    `wanted` pairs each source name with its conformed identifier, in schema order. `owners`
    maps the identifiers already in use (columns of the table, tables of the schema) to the
    source name they were made from, if recorded. A source keeps the identifier recorded as
    its own; otherwise it gets its conformed identifier if free, else that identifier with the
    first free `_<n>` suffix. `reserved` identifiers are never handed out.
    """
    assigned: dict[str, str] = {}
    claimed_by_source = {source: name for name, source in owners.items() if source is not None}
    taken = set(owners) | set(reserved)
    for source, conformed in wanted:
        existing = claimed_by_source.get(source)
        if existing is not None:
            assigned[source] = existing
        elif conformed in owners and owners[conformed] is None and conformed not in reserved:
            # An identifier nobody recorded a source for is adopted by the first source that
            # conforms to it (tables and columns made before the mapping was recorded).
            assigned[source] = conformed
            owners = {**owners, conformed: source}
            claimed_by_source[source] = conformed
    # A suffixed name never takes the plain name another source conforms to.
    plain_names = {conformed for _, conformed in wanted}
    for source, conformed in wanted:
        if source in assigned:
            continue
        candidate = conformed
        number = 2
        while (
            candidate in taken
            or candidate in assigned.values()
            or (candidate != conformed and candidate in plain_names)
        ):
            candidate = with_suffix(conformed, number)
            number += 1
        assigned[source] = candidate
        taken.add(candidate)
    return assigned
