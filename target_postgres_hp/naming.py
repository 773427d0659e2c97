"""Identifiers: raw-style names for raw tables and their schema, within PostgreSQL's 63 bytes.

Raw-style names are lower-case, hold only `a-z`, digits and `_`, and never start with a digit,
so they never need quoting. A name longer than 63 bytes is cut and ends with a short hash of
the whole original, so two long names never collide by truncation.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

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
