"""A batch input file, checked line by line (pure): every line must be a JSON request OpenAI's Batch API accepts,
and an error names the line number, so a 1 000-line file is fixed in one round."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

ENDPOINTS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")


class BatchRequestError(Exception):
    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


@dataclass(frozen=True)
class BatchLine:
    line: int  # 1-based
    custom_id: str
    url: str
    body: dict[str, Any]


def parse_lines(content: bytes, max_lines: int) -> list[BatchLine]:
    lines: list[BatchLine] = []
    seen: set[str] = set()
    for number, raw in enumerate(content.splitlines(), start=1):
        if not raw.strip():
            continue
        if len(lines) >= max_lines:
            raise BatchRequestError(f"The file has more than {max_lines} request lines.", "file")
        lines.append(_line(number, raw, seen))
    if not lines:
        raise BatchRequestError("The file holds no request lines.", "file")
    return lines


def _line(number: int, raw: bytes, seen: set[str]) -> BatchLine:
    def bad(why: str) -> BatchRequestError:
        return BatchRequestError(f"Line {number}: {why}", "file")

    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise bad(f"not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise bad("expected a JSON object")
    custom_id = value.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        raise bad("custom_id must be a non-empty string")
    if custom_id in seen:
        raise bad(f"custom_id {custom_id!r} is used by an earlier line")
    seen.add(custom_id)
    if value.get("method") != "POST":
        raise bad("method must be POST")
    url = value.get("url")
    if url not in ENDPOINTS:
        raise bad(f"url must be one of {', '.join(ENDPOINTS)}")
    body = value.get("body")
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        raise bad("body must be an object with a model")
    if body.get("stream"):
        raise bad("stream is not supported in a batch")
    return BatchLine(number, custom_id, url, body)
