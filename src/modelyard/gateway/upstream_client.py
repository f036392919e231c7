"""One pooled keep-alive HTTP/1.1 client for all upstream calls.

Engines speak plain HTTP/1.1 on loopback or a private network, and the gateway only ever POSTs a JSON body and
relays the answer, so a general-purpose client (aiohttp: request/response objects, header multidicts, payload
writers, timers per call) costs more CPU per request than everything else the gateway does; profiles under load
showed it as the largest single cost. This client is an asyncio protocol with httptools' response parser: a
request is one ``transport.write`` of pre-assembled bytes, the answer's body arrives as the chunks the parser
yields (de-chunked), and the connection goes back to its pool when the answer is complete.

Behaviour the gateway relies on:

- connections are kept alive and reused per upstream origin, so a request costs no TCP handshake;
- only connecting is bounded in time (``connect_timeout_s``): generations can legitimately run for minutes, and a
  client that gives up cancels the call;
- closing a response that is not complete closes its connection, which is how the engine learns the client went
  away and stops generating;
- a reused connection that the upstream had already closed while idle is retried once on a fresh connection,
  but only if not a byte of the answer had arrived (the engine never saw that request);
- reading pauses when the relayed client is slower than the engine (bounded buffering).
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import httptools

_HIGH_WATER = 256 * 1024  # pause reading from the upstream above this much unread body
_LOW_WATER = 64 * 1024


class UpstreamError(ConnectionError):
    """The upstream could not be reached, or its connection broke before the answer was complete."""


@dataclass(frozen=True)
class UpstreamClientSettings:
    connect_timeout_s: float = 5.0
    max_connections: int = 1024  # per upstream origin; further requests wait for a free connection
    keepalive_timeout_s: float = 60.0  # idle connections older than this are closed instead of reused


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection carrying one request at a time."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        # made by the loop's create_connection, so inside it: kept, because on Python 3.11 every
        # get_running_loop() is a getpid() system call, and a waiter is made per request and per streamed chunk
        self._loop = asyncio.get_running_loop()
        self._parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.idle_since = 0.0
        self.keep_alive = True
        self.status = 0
        self.received_any = False
        self.complete = False
        self._headers_waiter: asyncio.Future[None] | None = None
        self._body: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._paused = False
        self._body_waiter: asyncio.Future[None] | None = None
        self._error: Exception | None = None

    # asyncio protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.complete:
            self._fail(UpstreamError(f"connection closed by the upstream{f': {exc}' if exc else ''}"))

    def data_received(self, data: bytes) -> None:
        self.received_any = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamError(f"invalid HTTP from the upstream: {exc}"))
            self.close()

    # httptools callbacks
    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        self.keep_alive = self._parser.should_keep_alive()
        _wake(self._headers_waiter)

    def on_body(self, body: bytes) -> None:
        self._body.append(body)
        self._buffered += len(body)
        if self._buffered > _HIGH_WATER and not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()
        _wake(self._body_waiter)

    def on_message_complete(self) -> None:
        self.complete = True
        _wake(self._body_waiter)

    # used by the pool and the response
    def start(self, request: bytes) -> None:
        assert self._transport is not None
        self.status = 0
        self.received_any = False
        self.complete = False
        self._body.clear()
        self._buffered = 0
        self._error = None
        self._transport.write(request)

    async def wait_headers(self) -> None:
        if self.status == 0 and self._error is None:
            self._headers_waiter = self._loop.create_future()
            try:
                await self._headers_waiter
            finally:
                self._headers_waiter = None
        if self._error is not None and self.status == 0:
            raise self._error

    async def next_chunk(self) -> bytes | None:
        """The next piece of body, or None at its end."""
        while not self._body:
            if self.complete:
                return None
            if self._error is not None:
                raise self._error
            self._body_waiter = self._loop.create_future()
            try:
                await self._body_waiter
            finally:
                self._body_waiter = None
        data = self._body.popleft() if len(self._body) == 1 else self._take_all()
        self._buffered -= len(data)
        if self._paused and self._buffered < _LOW_WATER and self._transport is not None:
            self._paused = False
            self._transport.resume_reading()
        return data

    def _take_all(self) -> bytes:
        data = b"".join(self._body)
        self._body.clear()
        return data

    def _fail(self, error: Exception) -> None:
        self._error = error
        for waiter in (self._headers_waiter, self._body_waiter):
            if waiter is not None and not waiter.done():
                waiter.set_exception(error)

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()


def _wake(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


class UpstreamResponse:
    """An upstream answer whose body is read (whole, or chunk by chunk) before ``release()`` or ``close()``."""

    def __init__(self, connection: _Connection, pool: _OriginPool) -> None:
        self._connection = connection
        self._pool = pool
        self._done = False
        self.status = connection.status
        self.attempts = 1  # 2 when a stale pooled connection forced a retry on a fresh one

    async def read(self) -> bytes:
        parts = []
        while (data := await self._connection.next_chunk()) is not None:
            parts.append(data)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def next_chunk(self) -> bytes | None:
        """The next piece of body as it arrives, or None at its end."""
        return await self._connection.next_chunk()

    async def iter_any(self) -> AsyncIterator[bytes]:
        """Body bytes as they arrive (chunked transfer encoding already removed)."""
        while (data := await self._connection.next_chunk()) is not None:
            yield data

    def release(self) -> None:
        """Give the connection back for reuse if the answer was read to its end, else close it."""
        if self._done:
            return
        self._done = True
        connection = self._connection
        if connection.complete and connection.keep_alive and not connection.closed:
            self._pool.put_back(connection)
        else:
            connection.close()
            self._pool.forget(connection)

    def close(self) -> None:
        """Drop the connection (the upstream sees the client go away and stops work for it)."""
        if self._done:
            return
        self._done = True
        self._connection.close()
        self._pool.forget(self._connection)


class _OriginPool:
    """Connections to one host:port: idle ones are reused most-recent first; at most ``max_connections`` open."""

    def __init__(
        self, host: str, port: int, host_header: str, settings: UpstreamClientSettings, tls: bool = False
    ) -> None:
        self._tls = ssl.create_default_context() if tls else None
        self._host = host
        self._port = port
        self._host_line = f"Host: {host_header}\r\n".encode()
        self._settings = settings
        self._idle: list[_Connection] = []
        self._open = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    def request_bytes(self, path: str, body: bytes, extra_headers: bytes = b"") -> bytes:
        return b"".join(
            (
                b"POST ",
                path.encode(),
                b" HTTP/1.1\r\n",
                self._host_line,
                extra_headers,
                b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body),
                body,
            )
        )

    async def post(self, path: str, body: bytes, extra_headers: bytes = b"") -> UpstreamResponse:
        request = self.request_bytes(path, body, extra_headers)
        connection, reused = await self._acquire()
        try:
            return await self._exchange(connection, request)
        except UpstreamError:
            if not reused or connection.received_any:
                raise
        # The upstream had closed this idle connection before it saw the request: one try on a fresh one.
        response = await self._exchange(await self._connect(), request)
        response.attempts = 2
        return response

    async def _exchange(self, connection: _Connection, request: bytes) -> UpstreamResponse:
        try:
            connection.start(request)
            await connection.wait_headers()
        except BaseException:
            connection.close()  # also on cancellation: the upstream must see the client go away
            self.forget(connection)
            raise
        return UpstreamResponse(connection, self)

    async def _acquire(self) -> tuple[_Connection, bool]:
        while True:
            now = time.monotonic()
            while self._idle:
                connection = self._idle.pop()
                if not connection.closed and now - connection.idle_since < self._settings.keepalive_timeout_s:
                    return connection, True
                connection.close()
                self._open -= 1
            if self._open < self._settings.max_connections:
                return await self._connect(), False
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter

    async def _connect(self) -> _Connection:
        self._open += 1
        loop = asyncio.get_running_loop()
        try:
            _, connection = await asyncio.wait_for(
                loop.create_connection(_Connection, self._host, self._port, ssl=self._tls),
                self._settings.connect_timeout_s,
            )
        except (OSError, TimeoutError) as exc:
            self._open -= 1
            self._wake_one()
            raise UpstreamError(f"cannot connect to {self._host}:{self._port}: {exc or 'timed out'}") from None
        except BaseException:
            self._open -= 1
            self._wake_one()
            raise
        return connection

    def put_back(self, connection: _Connection) -> None:
        connection.idle_since = time.monotonic()
        self._idle.append(connection)
        self._wake_one()

    def forget(self, connection: _Connection) -> None:
        """A connection that will not come back (closed): free its slot."""
        self._open -= 1
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def close(self) -> None:
        for connection in self._idle:
            connection.close()
        self._idle.clear()


class UpstreamClient:
    """The gateway's one client for every upstream: a connection pool per origin (http, or https for remote
    upstreams)."""

    def __init__(self, settings: UpstreamClientSettings) -> None:
        self._settings = settings
        self._origins: dict[str, _OriginPool] = {}
        self._targets: dict[str, tuple[_OriginPool, str]] = {}  # full URL -> (its origin's pool, path)

    async def post(self, url: str, body: bytes, extra_headers: bytes = b"") -> UpstreamResponse:
        """POST a JSON body; returns once the status and headers are in (the body is read from the response).
        ``extra_headers`` are complete header lines (e.g. a remote upstream's ``Authorization``)."""
        target = self._targets.get(url) or self._target(url)
        return await target[0].post(target[1], body, extra_headers)

    def _target(self, url: str) -> tuple[_OriginPool, str]:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UpstreamError(f"unsupported upstream URL {url!r} (expected http(s)://host:port/...)")
        origin = f"{parts.scheme}://{parts.netloc}"
        pool = self._origins.get(origin)
        if pool is None:
            tls = parts.scheme == "https"
            port = parts.port or (443 if tls else 80)
            pool = self._origins[origin] = _OriginPool(parts.hostname, port, parts.netloc, self._settings, tls)
        target = self._targets[url] = (pool, parts.path or "/")
        return target

    async def close(self) -> None:
        for pool in self._origins.values():
            pool.close()
        self._origins.clear()
        self._targets.clear()


def create_session(settings: UpstreamClientSettings) -> UpstreamClient:
    """The upstream client of one gateway process (named for the runtime, which opens it inside the event loop)."""
    return UpstreamClient(settings)
