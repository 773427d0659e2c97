"""Reading Singer messages: one JSON document per line, numbers kept exact, every problem
reported with its line number.

Decoding uses msgspec (several times faster than the standard library); numbers with a fraction
or exponent become Decimal so nothing is rounded. The reader also tells whether a line might hold
NUL characters or NaN/Infinity, so records that cannot need cleaning skip the walk that finds
them.
"""

from __future__ import annotations

import gc
import json
import sys
from collections import Counter
from collections.abc import Callable, Iterable
from contextlib import suppress
from typing import IO, Any

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
    # Not JSON. msgspec says what is wrong more plainly once the line's own ending is set aside
    # (a line cut off mid-string is then "unexpected end of input", not a control character).
    try:
        _DECODER.decode(line.rstrip())
    except msgspec.DecodeError as refusal:
        raise ValueError(str(refusal)) from None
    raise ValueError("not JSON")  # pragma: no cover - the stripped line cannot be valid


def utf8_problem(line: str | bytes) -> str | None:
    """What is wrong with a line that is not UTF-8, or None when it is."""
    if isinstance(line, str) or line.isascii():
        return None
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as error:
        return f"not valid UTF-8 (byte 0x{line[error.start]:02x} at offset {error.start})"
    return None


def state_value_text(line: str | bytes) -> str:
    """The `value` of a STATE line exactly as it was written."""
    raw = msgspec.json.decode(line, type=_StateLine).value
    return bytes(raw).decode("utf-8")


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
        lines: Iterable[str | bytes] = file_input or self.default_input
        routes = self.fast_routes
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
        stats["RECORD"] += fast_count
        return stats
