"""The floor of the HTTP side: ASGI types and the few helpers every endpoint uses.

Endpoints are plain ASGI callables rather than framework endpoints: a request object, middleware stack and
response class per call cost more than the proxying itself at thousands of requests per second. What they share
lives here — header access, a bounded body read, whole responses (JSON, errors), and running a handler until the
client goes away. Nothing here imports the rest of modelyard except the error vocabulary.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

import orjson

from modelyard.errors import APIError, body_too_large, invalid_value

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

CLIENT_CLOSED = 499  # nginx's convention for "client closed the request before the response finished"
JSON = b"application/json"


class ClientDisconnected(Exception):
    """The client went away before its request body was read."""


class Request:
    """One HTTP request as the endpoints see it: the ASGI triple, the path's named parts, and who is calling.

    ``caller`` is whatever the door (authentication) established — a key's grant, or None when no key is needed;
    the layers that read it know its type. One small object per request instead of passing five values around.
    """

    __slots__ = ("caller", "params", "receive", "scope", "send")

    def __init__(
        self, scope: Scope, receive: Receive, send: Send, params: Mapping[str, str] | None = None, caller: Any = None
    ) -> None:
        self.scope = scope
        self.receive = receive
        self.send = send
        self.params: Mapping[str, str] = params or {}
        self.caller = caller

    def header(self, name: bytes) -> bytes | None:
        return header(self.scope, name)

    def query(self) -> dict[str, str]:
        return dict(parse_qsl(self.scope.get("query_string", b"").decode(errors="replace")))

    def query_int(self, name: str, default: int, minimum: int, maximum: int) -> int:
        """An integer query parameter, clamped to [minimum, maximum]; a 400 naming it when it is not a number."""
        text = self.query().get(name)
        if text is None:
            return default
        try:
            return max(minimum, min(maximum, int(text)))
        except ValueError:
            raise invalid_value(f"{name} must be an integer", name) from None

    async def body(self, limit: int) -> bytes:
        return await read_body(self.receive, self.scope, limit)

    @property
    def client_host(self) -> str:
        client = self.scope.get("client") or ("unknown", 0)
        return str(client[0])


_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:/+=@-]{1,128}")


def client_request_id(value: bytes | None) -> bytes | None:
    """A client's ``x-request-id`` when it is safe to echo and to log as one ``key=value`` token (letters,
    digits and ``._:/+=@-``, at most 128 bytes); anything else is replaced by a fresh id (None here)."""
    if value is None or _REQUEST_ID.fullmatch(value) is None:
        return None
    return value


def header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


async def read_body(receive: Receive, scope: Scope, limit: int) -> bytes:
    """Read the whole body, refusing with 413 as soon as it is known to exceed ``limit``."""
    declared = header(scope, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise body_too_large(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise body_too_large(limit)
            chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def send_bytes(
    send: Send, status: int, body: bytes, headers: Headers | None = None, content_type: bytes = JSON
) -> None:
    """A whole response. ``content-length`` is given so the server frames it as is, not with chunked encoding."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type), (b"content-length", b"%d" % len(body)), *(headers or ())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def send_json(send: Send, status: int, value: Any, headers: Headers | None = None) -> None:
    await send_bytes(send, status, orjson.dumps(value), headers)


async def send_error(send: Send, error: APIError, extra_headers: Headers | None = None) -> None:
    """The one way an error reaches a client: its OpenAI-shaped body, its status and its own headers."""
    headers = [(k.encode(), v.encode()) for k, v in error.headers.items()]
    await send_bytes(send, error.status, error.body(), headers + (extra_headers or []))


async def run_until_disconnect(receive: Receive, send: Send, work: Callable[[Send], Awaitable[int]]) -> int:
    """Run ``work`` (which sends the response) but cancel it the moment the client goes away.

    Cancelling closes the upstream connection, which is what makes the engine stop generating for a client
    that is no longer listening. A "disconnect" that servers report once the response is complete is not a
    client going away, so work that already finished its response is left to finish its bookkeeping.

    ``work`` runs in the calling task and only the disconnect watcher gets a task of its own: one task per
    request instead of two, which is measurable at thousands of requests per second.
    """
    completed = False
    client_gone = False
    task = asyncio.current_task()
    assert task is not None

    async def tracking_send(message: Message) -> None:
        nonlocal completed
        await send(message)
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            completed = True

    def on_disconnect(watcher: asyncio.Future[None]) -> None:
        nonlocal client_gone
        if not watcher.cancelled() and watcher.exception() is None and not completed:
            client_gone = True
            task.cancel()

    # the task's own loop: ensure_future would look the running loop up again (a getpid() call on Python 3.11)
    watcher = task.get_loop().create_task(_wait_for_disconnect(receive))
    watcher.add_done_callback(on_disconnect)
    try:
        return await work(tracking_send)
    except asyncio.CancelledError:
        if not client_gone:
            raise
        return CLIENT_CLOSED
    finally:
        watcher.remove_done_callback(on_disconnect)
        watcher.cancel()
        if client_gone:
            task.uncancel()  # the cancellation was ours, to stop the work; the request itself carries on


async def _wait_for_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
