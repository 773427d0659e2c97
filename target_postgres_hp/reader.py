"""Reading Singer messages: one JSON document per line, numbers kept exact, every problem
reported with its line number.

Decoding uses msgspec (several times faster than the standard library); numbers with a fraction
or exponent become Decimal so nothing is rounded. The reader also tells whether a line might hold
NUL characters or NaN/Infinity, so records that cannot need cleaning skip the walk that finds
them.
"""

from __future__ import annotations

import gc
import io
import json
import os
import select
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import suppress
from decimal import Decimal
from typing import IO, Any, Protocol

import msgspec
from singer_sdk.singerlib.encoding import GenericSingerReader

from target_postgres_hp.errors import BadInput, RecordRefused
from target_postgres_hp.rawdata import exact_integer, exact_number, number_texts_made
from target_postgres_hp.records import ENVELOPE, FastHandler, FastRoutes

#: Numbers with a fraction or an exponent as Decimal, their text kept when `str()` would not
#: give it back, or when NUMERIC cannot hold them (`rawdata.exact_number`).
_DECODER = msgspec.json.Decoder(float_hook=exact_number)

#: Allocations between two young-generation collections while loading (the default is 700).
GC_THRESHOLD = 50_000

#: Python's recursion limit while reading: decoding, cleaning and typing a value go one level
#: deeper per level of nesting, and SPEC §9 asks for at least 1,000 levels (the default limit
#: is 1,000 frames in all). Deeper input is bad input, not a crash.
RECURSION_LIMIT = 12_000


#: Bytes read from the input at most at once. Between two reads the reader asks whether a
#: batch has waited too long (SPEC §12): from a pipe (64 KiB at a time) that is every hundred
#: or so lines of fast input, with slow input at every line that arrives.
CHUNK_BYTES = 1 << 20


class Deadlines(Protocol):
    """What the reader asks between two reads of the input: when staged work must be
    committed at the latest, and to commit what is due."""

    def due(self) -> float | None:
        """The `time.monotonic()` by which something staged must be committed, or None."""
        ...

    def commit_due(self) -> None:
        """Commit what is due, and emit the STATE that then may be."""
        ...


def timed_blocks(fd: int, deadlines: Deadlines) -> Iterator[list[bytes]]:
    """The lines of the input behind `fd`, a block at a time, each without its newline.
    While the input is silent, the reader waits only until the next deadline, commits what is
    due, and waits again: a slow or stalled tap gets its STATE within the limit (SPEC §12)."""
    parts: list[bytes] = []
    while True:
        due = deadlines.due()
        if due is not None:
            wait = due - time.monotonic()
            if wait <= 0 or not select.select([fd], [], [], wait)[0]:
                deadlines.commit_due()
                continue
        chunk = os.read(fd, CHUNK_BYTES)
        if not chunk:
            break
        if chunk.find(b"\n") < 0:
            parts.append(chunk)  # a line longer than a chunk, or a slow one
            continue
        lines = chunk.split(b"\n")
        if parts:
            parts.append(lines[0])
            lines[0] = b"".join(parts)
            parts = []
        last = lines.pop()
        if last:
            parts.append(last)
        yield lines
    if parts:
        yield [b"".join(parts)]


def _fileno(source: object) -> int | None:
    """The file descriptor to read `source` through, or None when it has none."""
    try:
        return int(source.fileno())  # type: ignore[attr-defined]
    except (AttributeError, OSError, io.UnsupportedOperation, ValueError):
        return None


class _StateLine(msgspec.Struct):
    value: msgspec.Raw


def _decode(line: str | bytes) -> tuple[Any, bool]:
    """The line's value, and whether it needs cleaning before it can be stored: the standard
    library had to read it (NaN and Infinity are not JSON but taps send them, a lone UTF-16
    surrogate escape is refused by msgspec, and so is an integer of more than 4,300 digits),
    or it holds a number beyond NUMERIC's range, read as its text (`rawdata.NumberText`)."""
    made = number_texts_made[0]
    try:
        return _DECODER.decode(line), number_texts_made[0] != made
    except msgspec.DecodeError:
        pass
    try:
        return json.loads(line, parse_float=exact_number, parse_int=exact_integer), True
    except ValueError:
        pass
    with suppress(ValueError):
        # An integer of more digits than Python converts to int (4,300) stays exact too.
        return json.loads(line, parse_float=Decimal, parse_int=_integer), True
    # Not JSON. msgspec says what is wrong more plainly once the line's own ending is set aside
    # (a line cut off mid-string is then "unexpected end of input", not a control character).
    try:
        _DECODER.decode(line.rstrip())
    except msgspec.DecodeError as refusal:
        raise ValueError(str(refusal)) from None
    raise ValueError("not JSON")  # pragma: no cover - the stripped line cannot be valid


def _integer(text: str) -> int | Decimal:
    """A JSON integer: an int, or a Decimal when it has more digits than int() reads."""
    try:
        return int(text)
    except ValueError:
        return Decimal(text)


def utf8_problem(line: str | bytes) -> str | None:
    """What is wrong with a line that is not UTF-8, or None when it is."""
    if isinstance(line, str) or line.isascii():
        return None
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as error:
        return f"not valid UTF-8 (byte 0x{line[error.start]:02x} at offset {error.start})"
    return None


#: Reads a JSON value only to find where it ends: numbers and NaN/Infinity stay text.
_SPANS = json.JSONDecoder(parse_float=str, parse_int=str, parse_constant=str)


def state_value_text(line: str | bytes) -> str:
    """The `value` of a STATE line exactly as it was written (SPEC §9: byte for byte, whatever
    it holds)."""
    try:
        raw = msgspec.json.decode(line, type=_StateLine).value
    except msgspec.DecodeError:
        # NaN, Infinity or a lone surrogate escape, which msgspec refuses but the reader took.
        return _member_text(line if isinstance(line, str) else line.decode("utf-8"), "value")
    return bytes(raw).decode("utf-8")


def _member_text(text: str, name: str) -> str:
    """The text of member `name` of the JSON object `text` (the last one if it is given
    twice, as `json.loads` keeps the last), found with the standard library's scanner."""
    found = ""
    index = _after_space(text, text.index("{") + 1)
    while text[index] == '"':
        key, index = _SPANS.raw_decode(text, index)
        index = _after_space(text, text.index(":", index) + 1)
        _, end = _SPANS.raw_decode(text, index)
        if key == name:
            found = text[index:end]
        index = _after_space(text, end)
        if text[index] != ",":
            break
        index = _after_space(text, index + 1)
    return found


def _after_space(text: str, index: int) -> int:
    """The index of the first character at or after `index` that is not JSON whitespace."""
    while text[index] in " \t\n\r":
        index += 1
    return index


class LineReader(GenericSingerReader[str]):
    """Reads messages and hands each to its callback, tracking the line number."""

    def __init__(self) -> None:
        super().__init__()
        self.line_number = 0
        self.maybe_dirty = True
        self.current_line: str | bytes = ""
        #: The streams whose RECORD lines the target takes the fast way, and their handlers;
        #: a handler returns False to leave the line to the slow way.
        self.fast_routes = FastRoutes()
        #: Asked between two reads of the input (the target sets it): SPEC §12's freshness.
        self.deadlines: Deadlines | None = None

    @property
    def default_input(self) -> IO[str]:
        """Standard input, read as bytes (decoded by msgspec, not by a text wrapper)."""
        return sys.stdin.buffer  # type: ignore[return-value]

    def deserialize_json(self, line: str) -> dict[str, Any]:
        """One message; a line that is not a JSON object is bad input."""
        problem = utf8_problem(line)
        if problem is not None:
            raise BadInput(self.line_number, problem)
        try:
            message, fallback = _decode(line)
        except ValueError as error:
            raise BadInput(self.line_number, f"not valid JSON ({error})") from None
        if not isinstance(message, dict):
            raise BadInput(self.line_number, "not a JSON object")
        if fallback:
            self.maybe_dirty = True
        return message

    def process_lines(
        self,
        file_input: IO[str] | None,
        callbacks: dict[str, Callable[[dict[str, Any]], None]],
    ) -> Counter[str]:
        """Dispatch every line to its handler, with the cyclic garbage collector tuned for
        the run: a batch's rows are kept until its commit, and with the default thresholds
        the collector walks them, and every object of the loaded libraries, again and again
        (7% of a load's CPU). Records make no reference cycles, so it runs less often and
        skips the objects that exist before the first record."""
        thresholds = gc.get_threshold()
        gc.freeze()
        gc.set_threshold(GC_THRESHOLD, *thresholds[1:])
        recursion_limit = sys.getrecursionlimit()
        sys.setrecursionlimit(max(recursion_limit, RECURSION_LIMIT))
        try:
            return self._process_lines(file_input, callbacks)
        except RecordRefused as refusal:
            # Raised by a stream's decoder while it reads the record of the current line.
            raise BadInput(self.line_number, str(refusal)) from None
        except RecursionError:
            raise BadInput(
                self.line_number,
                f"nested deeper than the target can read (about {RECURSION_LIMIT - 1_000:,}"
                " levels of objects and arrays)",
            ) from None
        finally:
            sys.setrecursionlimit(recursion_limit)
            gc.set_threshold(*thresholds)
            gc.unfreeze()

    def _process_lines(
        self,
        file_input: IO[str] | None,
        callbacks: dict[str, Callable[[dict[str, Any]], None]],
    ) -> Counter[str]:
        """Dispatch every non-blank line to the callback of its message type."""
        stats: Counter[str] = Counter()
        source = file_input or self.default_input
        deadlines = self.deadlines
        fd = _fileno(source) if deadlines is not None else None
        blocks: Iterable[Iterable[str | bytes]] = [source]
        if deadlines is not None and fd is not None:
            blocks = timed_blocks(fd, deadlines)
        routes = self.fast_routes
        fast_count = 0
        for block in blocks:
            fast_count += self._process_block(block, callbacks, stats, routes)
        stats["RECORD"] += fast_count
        return stats

    def _process_block(
        self,
        lines: Iterable[str | bytes],
        callbacks: dict[str, Callable[[dict[str, Any]], None]],
        stats: Counter[str],
        routes: FastRoutes,
    ) -> int:
        """Dispatch the lines of one block of input; return how many went the fast way."""
        handlers, text_handlers = routes.handlers, routes.text_handlers
        fast_count = 0
        for line in lines:
            self.line_number += 1
            decode = routes.decode
            if (
                decode is not None
                # A NUL escape, found from the end: the search then skips by its first
                # character, a backslash (by its last, a 0, it would stop at every digit).
                and (
                    line.rfind(b"\\u0000") if type(line) is bytes else line.rfind("\\u0000")  # type: ignore[arg-type]
                )
                < 0
            ):
                # msgspec leaves the bytes of a record's unread properties unchecked.
                if type(line) is bytes and not line.isascii():
                    try:
                        line.decode()
                    except UnicodeDecodeError:
                        raise BadInput(self.line_number, str(utf8_problem(line))) from None
                handler: FastHandler | None = None
                try:
                    message = decode(line)
                    handler = handlers.get(type(message))
                # ArithmeticError: an exponent beyond even Decimal's range, which the stream's
                # decoder reads the slow way (`decode.RecordDecoder.from_text`).
                except (msgspec.DecodeError, ArithmeticError):
                    with suppress(msgspec.DecodeError, ArithmeticError):
                        message = ENVELOPE.decode(line)
                        if message.stream is not None:
                            handler = text_handlers.get(message.stream)
                            if handler is not None:
                                routes.refused(message.stream)
                if handler is not None and message.type == "RECORD" and handler(message, line):
                    fast_count += 1
                    continue
            if not line.strip():
                continue
            self.current_line = line
            if isinstance(line, bytes):
                self.maybe_dirty = b"\\u0000" in line or b"NaN" in line or b"Infinity" in line
            else:
                self.maybe_dirty = "\\u0000" in line or "NaN" in line or "Infinity" in line
            message = self.deserialize_json(line)  # type: ignore[arg-type]
            message_type = message.get("type")
            callback = callbacks.get(message_type) if isinstance(message_type, str) else None
            if message_type is None:
                raise BadInput(self.line_number, "message without a type")
            if callback is None:
                raise BadInput(
                    self.line_number,
                    f"unknown message type {message_type!r}; expected SCHEMA, RECORD, STATE,"
                    " ACTIVATE_VERSION or BATCH",
                )
            callback(message)
            stats[str(message_type)] += 1
        return fast_count
