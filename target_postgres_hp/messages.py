"""What the target requires of a Singer message beyond being a JSON object (SPEC §9): each
check returns the one-sentence problem the reader reports with the line, or None."""

from __future__ import annotations

import json
from typing import Any


def schema_problem(message: dict[str, Any]) -> str | None:
    """What is wrong with a SCHEMA message, if anything."""
    stream_name = message.get("stream")
    schema = message.get("schema")
    if not isinstance(stream_name, str):
        return "SCHEMA message without a stream name"
    if not isinstance(schema, dict) or "properties" not in schema:
        return (
            f"SCHEMA message for stream {stream_name} has no properties key"
            ' (send "properties": {} for a stream without properties)'
        )
    for names in ("key_properties", "bookmark_properties"):
        listed = message.get(names)
        if listed is not None and not (
            isinstance(listed, list) and all(isinstance(name, str) for name in listed)
        ):
            return (
                f"SCHEMA message for stream {stream_name} has {names}"
                f" {json.dumps(listed, ensure_ascii=False)}; it must be a list of property"
                " names (strings)"
            )
    return None


def before_schema(kind: str, stream_name: object) -> str:
    """A message of a stream that has had no SCHEMA message yet."""
    return f"{kind} for stream {stream_name} arrived before that stream's SCHEMA message"


def stream_message_problem(kind: str, message: dict[str, Any], known_streams: object) -> str | None:
    """What is wrong with a BATCH or ACTIVATE_VERSION message (`kind`), if anything:
    `known_streams` holds the streams that had their SCHEMA message."""
    stream_name = message.get("stream")
    if kind == "BATCH" and not isinstance(stream_name, str):
        return "BATCH message without a stream name"
    if kind == "ACTIVATE_VERSION" and type(message.get("version")) is not int:
        return f"ACTIVATE_VERSION message for stream {stream_name} has no integer version"
    if not isinstance(known_streams, dict) or stream_name not in known_streams:
        return before_schema(kind, stream_name)
    return None
