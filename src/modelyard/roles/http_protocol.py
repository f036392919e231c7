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
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

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
        super().on_headers_complete()
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
