"""A lean HTTP/1.1 keep-alive client for load generation, with per-event timestamps for SSE streams.

Load generators written on top of a general-purpose client (aiohttp, httpx) spend more CPU per request than a fast
gateway does, and on a 2-core machine that CPU is taken from the system under test. This client sends pre-encoded
request bytes over a raw asyncio protocol and parses answers with httptools, so its cost stays small and constant
across contenders. It records when each body chunk arrived, which is what time-to-first-token and inter-token
latency are computed from.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import httptools

_TOKEN_KEYS = (b'"content":', b'"text":')


def encode_request(
    method: str, path: str, host: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> bytes:
    """Pre-encode a request once; the same bytes are then sent for every request of a run."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "Connection: keep-alive"]
    if body:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@dataclass
class Response:
    status: int = 0
    body: bytes = b""
    started: float = 0.0  # perf_counter when the request was written
    finished: float = 0.0
    token_times: list[float] = field(default_factory=list)  # arrival time of each SSE event that carries text
    usage_tokens: int | None = None  # completion_tokens from a usage event, when the server sent one


def carries_text(event: bytes) -> bool:
    """Whether an SSE event holds generated text: a non-empty ``content`` or ``text`` string (servers differ in
    JSON spacing: llama-server writes ``"text":"…"``, llama-cpp-python ``"text": "…"``)."""
    for key in _TOKEN_KEYS:
        start = event.find(key)
        if start == -1:
            continue
        value = event[start + len(key) : start + len(key) + 3].lstrip()
        if value[:1] == b'"' and value[1:2] != b'"':
            return True
    return False


class SSETokenClock:
    """Timestamps SSE events that carry generated text, as their bytes arrive."""

    def __init__(self, response: Response) -> None:
        self._response = response
        self._pending = b""

    def feed(self, data: bytes, now: float) -> None:
        buffer = self._pending + data if self._pending else data
        if b"\n\n" not in buffer:
            self._pending = buffer
            return
        *events, self._pending = buffer.replace(b"\r\n", b"\n").split(b"\n\n")
        for event in events:
            if b'"usage":{' in event:
                self._usage(event)
            if carries_text(event):
                self._response.token_times.append(now)

    def _usage(self, event: bytes) -> None:
        start = event.find(b'"completion_tokens":')
        if start == -1:
            return
        digits = event[start + 20 :].lstrip()
        end = 0
        while end < len(digits) and digits[end : end + 1].isdigit():
            end += 1
        if end:
            self._response.usage_tokens = int(digits[:end])


class Connection(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[Response] | None = None
        self._response = Response()
        self._chunks: list[bytes] = []
        self._clock: SSETokenClock | None = None
        self._keep_alive = True
        self.received_any = False

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(cls, host, port)
        return protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(ConnectionError(f"connection lost: {exc}"))

    def data_received(self, data: bytes) -> None:
        self.received_any = True
        now = time.perf_counter()
        if self._clock is not None:
            self._clock.feed(data, now)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if self._waiter is not None and not self._waiter.done():
                self._waiter.set_exception(ConnectionError(f"bad response: {exc}"))
            self.close()

    def on_body(self, body: bytes) -> None:
        if self._clock is None:
            self._chunks.append(body)

    def on_message_complete(self) -> None:
        response = self._response
        response.status = self._parser.get_status_code()
        response.body = b"".join(self._chunks)
        response.finished = time.perf_counter()
        self._keep_alive = self._parser.should_keep_alive()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(response)

    async def request(self, raw: bytes, stream: bool = False) -> Response:
        """Send pre-encoded request bytes and wait for the whole answer (stream bodies are timestamped, not kept)."""
        if self.closed or self.transport is None:
            raise ConnectionError("connection closed")
        self._response = Response(started=time.perf_counter())
        self.received_any = False
        self._chunks = []
        self._clock = SSETokenClock(self._response) if stream else None
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        try:
            return await self._waiter
        finally:
            self._waiter = None
            if not self._keep_alive:
                self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class ConnectionPool:
    """Idle keep-alive connections to one server, opened on demand."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._idle: list[Connection] = []
        self.opened = 0

    async def request(self, raw: bytes, stream: bool = False) -> Response:
        """Send on an idle connection (or a new one). A reused connection that the server had closed while idle
        (llama-server closes keep-alive connections after a few requests) is retried once on a fresh one, if not a
        byte of the answer had arrived — the server never saw that request."""
        connection = None
        while self._idle:
            candidate = self._idle.pop()
            if not candidate.closed:
                connection = candidate
                break
        if connection is not None:
            try:
                return await self._send(connection, raw, stream)
            except ConnectionError:
                if connection.received_any:
                    raise
        connection = await Connection.open(self.host, self.port)
        self.opened += 1
        return await self._send(connection, raw, stream)

    async def _send(self, connection: Connection, raw: bytes, stream: bool) -> Response:
        try:
            response = await connection.request(raw, stream)
        except BaseException:
            connection.close()
            raise
        if not connection.closed:
            self._idle.append(connection)
        return response

    def close(self) -> None:
        for connection in self._idle:
            connection.close()
        self._idle.clear()
