"""Server-sent-event framing and the little we need to know about each event.

The gateway forwards whole events as soon as they are complete (never buffering a stream), and peeks at them only
with byte searches: is this the first token (for time-to-first-token), and does it carry ``usage`` (for token
accounting). Only the one event that carries usage is JSON-decoded.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec
import orjson

_USAGE_KEY = b'"usage":{'
_EMPTY_CHOICES = b'"choices":[]'
_TOKEN_MARKERS = (b'"content":"', b'"text":"', b'"reasoning_content":"')


class EventSplitter:
    """Cut an upstream byte stream into complete SSE events (each returned with its blank-line terminator)."""

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, data: bytes) -> list[bytes]:
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n")
        buffer = self._pending + data if self._pending else data
        if b"\n\n" not in buffer:
            self._pending = buffer
            return []
        parts = buffer.split(b"\n\n")
        self._pending = parts.pop()
        return [part + b"\n\n" for part in parts if part]

    def remainder(self) -> bytes:
        return self._pending


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0


def carries_token(event: bytes) -> bool:
    return any(marker in event for marker in _TOKEN_MARKERS)


def usage_of_event(event: bytes) -> Usage | None:
    if _USAGE_KEY not in event:
        return None
    try:
        payload = orjson.loads(event[event.index(b"{") :])
    except (ValueError, orjson.JSONDecodeError):
        return None
    return usage_from_payload(payload)


def usage_from_payload(payload: object) -> Usage | None:
    usage = payload.get("usage") if isinstance(payload, dict) else None
    if not isinstance(usage, dict):
        return None
    return Usage(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))


class _UsageFields(msgspec.Struct):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class _UsageEnvelope(msgspec.Struct):
    usage: _UsageFields | None = None


_USAGE_DECODER = msgspec.json.Decoder(_UsageEnvelope)


def usage_of_body(raw: bytes) -> Usage | None:
    """The ``usage`` of a whole JSON answer. Decodes only that field: the answer's text is skipped, not built into
    Python objects, so the cost does not grow with long completions."""
    try:
        usage = _USAGE_DECODER.decode(raw).usage
    except msgspec.DecodeError:  # not JSON, not an object, or a usage of another shape: nothing to count
        return None
    if usage is None:
        return None
    return Usage(usage.prompt_tokens or 0, usage.completion_tokens or 0)


def is_usage_only(event: bytes) -> bool:
    """The extra final chunk that ``stream_options.include_usage`` adds (no choices, only usage)."""
    return _EMPTY_CHOICES in event and _USAGE_KEY in event


def error_event(message: str, type_: str = "api_error", code: str = "upstream_error") -> bytes:
    body = orjson.dumps({"error": {"message": message, "type": type_, "param": None, "code": code}})
    return b"data: " + body + b"\n\n"
