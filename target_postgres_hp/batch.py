"""Singer BATCH messages (the SDK's batch spec, SPEC §9): the records of the local files a
manifest names, decoded as RECORD lines are, numbers exact.

A manifest is read twice. The first pass (`Manifest.check`) reads every file whole and checks
every record without keeping it; only then does the second (`Manifest.records`) hand the
records over to be staged. So a missing, unreadable or corrupt file, or a bad record, stops
the run before any record of its BATCH is staged, and no file is ever held in memory: a JSONL
line may hold at most `MAX_LINE_BYTES`. Which files a manifest may name at all is
`batchfiles.BatchFiles`. Every problem is bad input naming the BATCH line and the file.
"""

from __future__ import annotations

import gzip
import math
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

from target_postgres_hp.batchfiles import BatchFiles, FileRefused
from target_postgres_hp.errors import BadInput, first_line
from target_postgres_hp.reader import _decode

#: The first two bytes of every gzip stream.
GZIP_MAGIC = b"\x1f\x8b"
#: Rows of a Parquet file turned into records at a time: bounds the memory a file takes.
PARQUET_ROWS = 10_000
#: The longest line of a JSONL batch file, its newline included: records of tens of MB load,
#: and a file without line breaks (or a gzip bomb) takes no more memory than this.
MAX_LINE_BYTES = 128 * 1024 * 1024

#: One record of a batch file: the file's URI, where the record is in it, the record.
Located = tuple[str, str, dict[str, Any]]


@dataclass(frozen=True)
class Manifest:
    """The files of one BATCH message, and how to read them."""

    line_number: int
    stream: str
    #: "jsonl" or "parquet".
    file_format: str
    #: A JSONL batch declared gzip-compressed.
    gzipped: bool
    #: The manifest's URIs and the local paths they name, in manifest order.
    files: tuple[tuple[str, Path], ...]
    #: Which files the manifest may name.
    allowed: BatchFiles

    @classmethod
    def from_message(
        cls, message: dict[str, Any], stream: str, line_number: int, allowed: BatchFiles
    ) -> Manifest:
        """The manifest of a BATCH message; an encoding the target cannot read, or an entry
        that is not a local `file://` URI, is bad input."""
        file_format, gzipped = _encoding(message.get("encoding"), stream, line_number)
        uris = message.get("manifest")
        if not isinstance(uris, list) or not all(isinstance(uri, str) for uri in uris):
            raise BadInput(line_number, f"BATCH for stream {stream} has no manifest list of URIs")
        files = tuple((uri, _local_path(uri, stream, line_number)) for uri in uris)
        return cls(line_number, stream, file_format, gzipped, files, allowed)

    def check(self, keys: Sequence[str]) -> None:
        """Read every file whole and check that each record has the key properties, keeping
        none: the first pass, which makes a bad file bad input before anything is staged."""
        for uri, where, record in self._located_records():
            for key in keys:
                if key not in record:
                    raise self._problem(
                        f"batch file {uri}, {where}: record of stream {self.stream} has no"
                        f" value for key property {key}"
                    )

    def records(self) -> Iterator[dict[str, Any]]:
        """Every record of every file, in manifest order."""
        for _uri, _where, record in self._located_records():
            yield record

    def _located_records(self) -> Iterator[Located]:
        read = self._parquet_records if self.file_format == "parquet" else self._jsonl_records
        for uri, path in self.files:
            yield from read(uri, path)

    def _problem(self, problem: str) -> BadInput:
        return BadInput(self.line_number, problem)

    def _unreadable(self, uri: str, last_read: str, error: BaseException) -> BadInput:
        past = f" past {last_read}" if last_read else ""
        return self._problem(f"batch file {uri} cannot be read{past} ({first_line(error)})")

    def _open(self, uri: str, path: Path) -> IO[bytes]:
        try:
            return self.allowed.open(path)
        except FileRefused as refusal:
            raise self._problem(f"batch file {uri} {refusal}") from None
        except OSError as error:
            reason = error.strerror or first_line(error)
            raise self._problem(f"batch file {uri} cannot be read ({reason})") from None

    def _jsonl_records(self, uri: str, path: Path) -> Iterator[Located]:
        """A JSONL file's records, one JSON object a line, decoded as the reader decodes
        RECORD lines. A file that starts as gzip is read as gzip even if the BATCH says no
        compression: the SDK's JSONL batcher compresses whatever its setting says."""
        number = 0
        with self._open(uri, path) as raw:
            try:
                compressed = self.gzipped or raw.read(2) == GZIP_MAGIC
                raw.seek(0)
                lines: IO[bytes] | gzip.GzipFile = gzip.GzipFile(fileobj=raw) if compressed else raw
                while line := lines.readline(MAX_LINE_BYTES + 1):
                    number += 1
                    if len(line) > MAX_LINE_BYTES:
                        raise self._problem(
                            f"batch file {uri}, line {number}: longer than"
                            f" {MAX_LINE_BYTES >> 20} MiB, the most a line of a batch file may"
                            " hold"
                        )
                    if line.strip():
                        yield uri, f"line {number}", self._jsonl_record(uri, number, line)
            except (OSError, EOFError, zlib.error) as error:
                raise self._unreadable(uri, f"line {number}" if number else "", error) from None

    def _jsonl_record(self, uri: str, number: int, line: bytes) -> dict[str, Any]:
        try:
            record, _ = _decode(line)
        except ValueError as error:
            raise self._problem(
                f"batch file {uri}, line {number}: not valid JSON ({error})"
            ) from None
        if not isinstance(record, dict):
            raise self._problem(f"batch file {uri}, line {number}: a record must be a JSON object")
        return record

    def _parquet_records(self, uri: str, path: Path) -> Iterator[Located]:
        """A Parquet file's rows as records, `PARQUET_ROWS` at a time. Parquet cannot tell a
        missing property from a null one: both load as null."""
        pyarrow, parquet = _pyarrow(self.stream, self.line_number)
        row = 0
        with self._open(uri, path) as raw:
            try:
                with parquet.ParquetFile(raw) as table:
                    for rows in table.iter_batches(batch_size=PARQUET_ROWS):
                        for record in rows.to_pylist():
                            row += 1
                            yield uri, f"row {row}", _record_value(record)
            except (OSError, ValueError, ArithmeticError, pyarrow.ArrowException) as error:
                raise self._unreadable(uri, f"row {row}" if row else "", error) from None


def _encoding(encoding: object, stream: str, line_number: int) -> tuple[str, bool]:
    """The format of a BATCH's files and whether a JSONL file is gzip-compressed; a Parquet
    file names its own compression, so its `compression` is not read."""
    if not isinstance(encoding, dict):
        raise BadInput(line_number, f"BATCH for stream {stream} has no encoding object")
    file_format = encoding.get("format")
    compression = encoding.get("compression")
    if file_format == "parquet":
        _pyarrow(stream, line_number)
        return "parquet", False
    if file_format != "jsonl":
        raise BadInput(
            line_number,
            f"BATCH for stream {stream} has encoding format {file_format!r}, which this target"
            " cannot read (it reads jsonl and parquet)",
        )
    if compression not in (None, "none", "gzip"):
        raise BadInput(
            line_number,
            f"BATCH for stream {stream} has compression {compression!r}, which this target"
            " cannot read (it reads gzip and none)",
        )
    return "jsonl", compression == "gzip"


def _local_path(uri: str, stream: str, line_number: int) -> Path:
    """The local path a `file://` URI names; any other URI is bad input."""
    parts = urlsplit(uri)
    path = Path(url2pathname(parts.path))
    if parts.scheme != "file" or parts.netloc not in ("", "localhost") or not path.is_absolute():
        raise BadInput(
            line_number,
            f"BATCH for stream {stream} names {uri!r}, which is not a file:// URI of a local"
            " file (this target reads only local batch files)",
        )
    return path


def _pyarrow(stream: str, line_number: int) -> tuple[Any, Any]:
    """`pyarrow` and `pyarrow.parquet`, an optional extra: without it a Parquet BATCH is bad
    input saying how to install it."""
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise BadInput(
            line_number,
            f"BATCH for stream {stream} holds Parquet files, which need pyarrow: install"
            " target-postgres-hp[parquet]",
        ) from None
    return pyarrow, pyarrow.parquet


def _record_value(value: Any) -> Any:
    """A value read from Parquet as the tap's RECORD line would carry it: a float as the
    exact decimal of its shortest text (as the reader reads a number with a fraction),
    NaN/Infinity left for cleaning, a datetime in ISO format and any other value JSON lacks
    as its text (as the SDK's `serialize_json` writes them)."""
    if isinstance(value, float):
        return Decimal(repr(value)) if math.isfinite(value) else value
    if isinstance(value, dict):
        return {key: _record_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_record_value(item) for item in value]
    if value is None or isinstance(value, (str, int, Decimal)):
        return value
    if isinstance(value, datetime):
        return value.isoformat(sep="T")
    return str(value)
