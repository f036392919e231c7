"""What an admin handler returns and how the app sends it: ``(status, value)`` becomes JSON, unless the value is
:class:`Ndjson` (JSON lines) or a ``str`` (Markdown)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from modelyard.asgi import Send, send_bytes

Reply = tuple[int, Any]


@dataclass(frozen=True)
class Ndjson:
    body: bytes


async def send_reply(send: Send, reply: Reply) -> None:
    status, value = reply
    if isinstance(value, Ndjson):
        await send_bytes(send, status, value.body, content_type=b"application/x-ndjson")
    elif isinstance(value, str):
        await send_bytes(send, status, value.encode(), content_type=b"text/markdown; charset=utf-8")
    else:
        await send_bytes(send, status, orjson.dumps(value))
