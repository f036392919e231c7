"""uvicorn's httptools protocol with the limits a server facing clients needs: slow or greedy clients cannot
hold connections or memory.

uvicorn's httptools protocol has no bound on a request's head (httptools buffers a header until it ends, so one
unfinished 96 MB header is 96 MB of gateway memory) and no read timeouts (a client that sends its headers a byte
a second, a short body, or nothing at all keeps its connection for ever). This subclass adds, per connection:

- the head (request line and headers) within ``max_header_bytes`` and ``max_headers`` fields, else 431;
- the head within ``header_timeout_s`` of the connection (or of a kept-alive connection's next first byte);
- the whole body within ``body_timeout_s`` of the head: the connection is closed, and a request whose body was
  still being read sees the client as gone (``http.disconnect``).

Conflicting ``Content-Length`` / ``Transfer-Encoding`` (request smuggling) is refused by the parser itself
(llhttp answers "Transfer-Encoding can't be present with Content-Length"): uvicorn then sends 400.

The cost on the normal path is one timer armed and cancelled per request head and body.

A whole response (one with a ``Content-Length``) leaves in one socket write instead of uvicorn's two (head, then
body): :class:`CoalescingCycle` holds the head until the body comes. A write is a system call, and on loopback it
also does the receiver's TCP work, so this is the cheapest saving per request the server layer has. Streamed
(chunked) answers still send their head at once, so a client sees the status before the first token.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http import httptools_impl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from modelyard.errors import error_body


@dataclass(frozen=True)
class ClientLimits:
    header_timeout_s: float = 10.0
    body_timeout_s: float = 60.0
    max_header_bytes: int = 65536
    max_headers: int = 100


class _TooManyHeaders(Exception):
    """Raised in the parser's header callback; httptools turns it into a parser error (uvicorn: a 400, made 431)."""


def guarded_protocol(limits: ClientLimits) -> type[HttpToolsProtocol]:
    """The protocol class for uvicorn's ``http=`` with ``limits`` applied."""
    return type("GuardedHttpToolsProtocol", (GuardedHttpToolsProtocol,), {"limits": limits})


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    limits = ClientLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._head_bytes = 0
        self._header_count = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
            if self._head_timer is None:
                self._arm_head_timer()
        super().data_received(data)  # too many headers: the parser's error reaches send_400_response
        if self._in_head and self._head_bytes > self.limits.max_header_bytes and not self.transport.is_closing():
            self._refuse_head(f"request line and headers over {self.limits.max_header_bytes} bytes")

    def send_400_response(self, msg: str) -> None:
        if self._header_count > self.limits.max_headers:
            self._refuse_head(f"more than {self.limits.max_headers} header fields")
            return
        super().send_400_response(msg)

    # parser callbacks
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._header_count = 0
        if self._head_timer is None:
            self._arm_head_timer()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > self.limits.max_headers:
            raise _TooManyHeaders
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        # uvicorn builds the request's cycle from its module's RequestResponseCycle: ours for this call only (the
        # loop runs one callback at a time). Changing an existing cycle's __class__ instead cost ~32 000 instructions
        # a request (callgrind): CPython 3.11 then can no longer specialise attribute access on that object.
        httptools_impl.RequestResponseCycle = CoalescingCycle  # type: ignore[misc]
        try:
            super().on_headers_complete()
        finally:
            httptools_impl.RequestResponseCycle = RequestResponseCycle  # type: ignore[misc]
        if self._body_timer is None and not self.transport.is_closing():
            self._body_timer = self.loop.call_later(self.limits.body_timeout_s, self._body_too_slow)

    def on_message_complete(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        self._in_head = True  # what comes next on this connection is the next request's head
        self._head_bytes = 0
        super().on_message_complete()

    # limits
    def _arm_head_timer(self) -> None:
        self._head_timer = self.loop.call_later(self.limits.header_timeout_s, self._head_too_slow)

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self._in_head and not self.transport.is_closing():
            if self._head_bytes:  # it had started a request: say why it is closed
                why = f"the request's headers took over {self.limits.header_timeout_s:g} s"
                self._answer(408, "Request Timeout", why)
            else:
                self.transport.close()

    def _body_too_slow(self) -> None:
        self._body_timer = None
        if not self.transport.is_closing():
            self.transport.close()  # the request's receive() then reports the client as gone

    def _refuse_head(self, why: str) -> None:
        self._answer(431, "Request Header Fields Too Large", f"Refused: {why}.")

    def _answer(self, status: int, reason: str, message: str) -> None:
        self._cancel_timers()
        body = error_body(message, "invalid_request_error", "request_too_large" if status == 431 else "timeout")
        head = (
            f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            "connection: close\r\n\r\n"
        ).encode()
        self.transport.write(head + body)
        self.transport.close()

    def _cancel_timers(self) -> None:
        for timer in (self._head_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._body_timer = None


class _Captured:
    """Stands in for the transport while uvicorn formats a response head, to keep the head instead of writing it."""

    __slots__ = ("data",)

    def __init__(self) -> None:
        self.data = b""

    def write(self, data: bytes) -> None:
        self.data += data

    def close(self) -> None:  # not reached: uvicorn closes only after a body
        raise RuntimeError("response head captured while closing")


class _Prefixed:
    """The transport, with the held head put in front of the body's (one) write."""

    __slots__ = ("head", "transport")

    def __init__(self, transport: asyncio.Transport, head: bytes) -> None:
        self.transport = transport
        self.head = head

    def write(self, data: bytes) -> None:
        head, self.head = self.head, b""
        self.transport.write(head + data if head else data)

    def close(self) -> None:
        if self.head:  # a body that wrote nothing (empty): the head still goes
            self.transport.write(self.head)
            self.head = b""
        self.transport.close()

    def is_closing(self) -> bool:
        return self.transport.is_closing()


class CoalescingCycle(RequestResponseCycle):
    """uvicorn's request/response cycle whose whole responses go out in one write (head + body).

    The head of a response that declares its ``Content-Length`` (not chunked, not to a HEAD request) is formatted by
    uvicorn as usual but kept; the first body message writes both. uvicorn's own checks and framing run unchanged.
    The transport is swapped only around a ``send`` that cannot yield (it yields only to wait for a paused writer,
    and is then left to uvicorn as it is)."""

    held_head = b""

    async def send(self, message: Any) -> None:
        transport = self.transport
        if self.flow.write_paused or self.disconnected:
            if self.held_head:  # rare: write the head first, keep uvicorn's order of events
                transport.write(self.held_head)
                self.held_head = b""
            await super().send(message)
            return
        if not self.response_started and message["type"] == "http.response.start":
            captured = _Captured()
            self.transport = captured  # type: ignore[assignment]
            try:
                await super().send(message)
            finally:
                self.transport = transport
            if self.chunked_encoding is False and self.scope["method"] != "HEAD":
                self.held_head = captured.data
            else:
                transport.write(captured.data)
            return
        if self.held_head and message["type"] == "http.response.body":
            prefixed = _Prefixed(transport, self.held_head)
            self.held_head = b""
            self.transport = prefixed  # type: ignore[assignment]
            try:
                await super().send(message)
            finally:
                self.transport = transport
                if prefixed.head:  # uvicorn refused the body (e.g. longer than Content-Length) before writing
                    transport.write(prefixed.head)
            return
        await super().send(message)
