"""Running the chat path for another endpoint: the Responses API and batch lines become chat requests that go
through the same :class:`~modelyard.gateway.pipeline.Pipeline` — routing, admission (the caller's key: its
limits, budget and guardrails), adaptation, observation — with the answer caught by a send of the caller's own.
"""

from __future__ import annotations

import asyncio
from typing import Any

from modelyard.asgi import Receive, Request, Scope, Send

_BODY_HEADERS = (b"content-length", b"content-type", b"transfer-encoding")


def inner_request(
    scope: Scope, caller: Any, body: bytes, send: Send, then: Receive | None = None, priority: str | None = None
) -> Request:
    """A request carrying ``body`` as if the client had sent it, answered through ``send``. ``then``: where
    later ``receive`` calls go (the outer client's, so its disconnect still stops the generation); without it
    nobody can disconnect (a batch line). ``priority``: the priority class a scheduler may read
    (``x-modelyard-priority``)."""
    headers = [(k, v) for k, v in scope.get("headers", []) if k not in _BODY_HEADERS and k != b"x-modelyard-priority"]
    headers += [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    if priority is not None:
        headers.append((b"x-modelyard-priority", priority.encode()))
    inner_scope = {**scope, "headers": headers}
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        if then is not None:
            return dict(await then())
        await asyncio.Event().wait()  # never returns: no client to lose
        raise AssertionError("unreachable")

    return Request(inner_scope, receive, send, caller=caller)


class Captured:
    """An ASGI send that keeps a whole answer (status, headers, body) instead of sending it."""

    def __init__(self) -> None:
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = b""

    async def __call__(self, message: Any) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            self.body += message.get("body", b"")
