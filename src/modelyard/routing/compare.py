"""Side-by-side comparison of a primary answer and its shadow's: the pure part (text out of answers, match)."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

import orjson

_SIMILARITY_CHARS = 2000  # difflib is quadratic; the first 2 000 characters say enough


@dataclass(frozen=True)
class Answer:
    status: int
    text: str
    completion_tokens: int
    latency_s: float


@dataclass(frozen=True)
class Comparison:
    exact_match: bool
    similarity: float  # 0..1 (difflib ratio of the first 2 000 characters)
    latency_delta_s: float  # shadow minus primary
    token_delta: int  # shadow minus primary


def answer_text(raw: bytes, stream: bool) -> str:
    """The generated text of a JSON answer, or of an SSE stream's content deltas."""
    if not raw:
        return ""
    if not stream:
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return ""
        return "".join(_choice_text(c) for c in body.get("choices", []) if isinstance(c, dict))
    parts = []
    for line in raw.split(b"\n"):
        if not line.startswith(b"data:"):
            continue
        data = line[5:].strip()
        if not data or data == b"[DONE]":
            continue
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            continue
        for choice in event.get("choices", []) if isinstance(event, dict) else []:
            delta = choice.get("delta") if isinstance(choice, dict) else None
            if isinstance(delta, dict) and isinstance(delta.get("content"), str):
                parts.append(delta["content"])
            elif isinstance(choice, dict) and isinstance(choice.get("text"), str):
                parts.append(choice["text"])
    return "".join(parts)


def _choice_text(choice: dict) -> str:
    message = choice.get("message")
    if isinstance(message, dict) and isinstance(message.get("content"), str):
        return message["content"]
    text = choice.get("text")
    return text if isinstance(text, str) else ""


def compare(primary: Answer, shadow: Answer) -> Comparison:
    a, b = primary.text.strip(), shadow.text.strip()
    similarity = 1.0 if a == b else difflib.SequenceMatcher(None, a[:_SIMILARITY_CHARS], b[:_SIMILARITY_CHARS]).ratio()
    return Comparison(
        exact_match=a == b,
        similarity=round(similarity, 4),
        latency_delta_s=shadow.latency_s - primary.latency_s,
        token_delta=shadow.completion_tokens - primary.completion_tokens,
    )
