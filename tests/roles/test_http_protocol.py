"""The server's client limits (roles/http_protocol.py) over a real socket: head size and field count, head and
body read timeouts, conflicting Content-Length / Transfer-Encoding, and that kept-alive clients are unaffected;
whole responses in one socket write, streamed ones with their head at once."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import uvicorn

from modelyard.roles.http_protocol import ClientLimits, guarded_protocol

LIMITS = ClientLimits(header_timeout_s=0.5, body_timeout_s=0.5, max_header_bytes=4096, max_headers=20)


class Echo:
    """Answers with the body's length; remembers whether a request saw its client go away."""

    def __init__(self) -> None:
        self.disconnected = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.disconnected += 1
                return
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": str(len(body)).encode()})


class Counting:
    """The server's real transport, with each write recorded (what reaches the socket, call by call)."""

    def __init__(self, transport: asyncio.Transport, writes: list[bytes]) -> None:
        self._transport = transport
        self._writes = writes

    def write(self, data: bytes) -> None:
        self._writes.append(bytes(data))
        self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def counting_protocol(writes: list[bytes]) -> type:
    class CountingProtocol(guarded_protocol(LIMITS)):  # type: ignore[misc]
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(Counting(transport, writes))

    return CountingProtocol


@contextlib.asynccontextmanager
async def server(app: Any, protocol: type | None = None) -> AsyncIterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    http = protocol or guarded_protocol(LIMITS)
    config = uvicorn.Config(app, http=http, lifespan="off", log_config=None, timeout_keep_alive=5)
    running = uvicorn.Server(config)
    task = asyncio.create_task(running.serve(sockets=[sock]))
    while not running.started:  # noqa: ASYNC110 - uvicorn offers no event for "started"
        await asyncio.sleep(0.01)
    try:
        yield sock.getsockname()[1]
    finally:
        running.should_exit = True
        await task


async def exchange(port: int, *pieces: bytes, pause: float = 0.0, read_for: float = 3.0) -> bytes:
    """Send ``pieces`` (``pause`` between them) and read until the server closes or ``read_for`` passes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answer = b""
    try:
        for piece in pieces:
            writer.write(piece)
            await writer.drain()
            if pause:
                await asyncio.sleep(pause)
        with contextlib.suppress(TimeoutError, ConnectionError):
            async with asyncio.timeout(read_for):
                while chunk := await reader.read(65536):
                    answer += chunk
    finally:
        writer.close()
    return answer


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


def test_a_huge_head_is_refused_with_431_before_it_ends() -> None:
    async def scenario() -> None:
        async with server(Echo()) as port:
            huge = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000  # never finished
            answer = await exchange(port, huge)
            assert answer.startswith(b"HTTP/1.1 431 ")
            assert b'"type":"invalid_request_error"' in answer

    run(scenario())


def test_too_many_header_fields_are_refused_with_431() -> None:
    async def scenario() -> None:
        async with server(Echo()) as port:
            fields = b"".join(b"X-%d: 1\r\n" % i for i in range(30))
            answer = await exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n")
            assert answer.startswith(b"HTTP/1.1 431 "), answer[:100]
            assert b"more than 20 header fields" in answer

    run(scenario())


def test_a_client_that_sends_nothing_or_a_slow_head_is_cut_off() -> None:
    async def scenario() -> None:
        async with server(Echo()) as port:
            loop = asyncio.get_running_loop()
            started = loop.time()
            assert await exchange(port, b"") == b""  # closed without an answer
            assert loop.time() - started < 2
            slow = [b"GET / HTTP/1.1\r\n", b"Host: x\r\n", b"X-A: 1\r\n", b"X-B: 1\r\n"]
            answer = await exchange(port, *slow, pause=0.2)
            assert answer.startswith(b"HTTP/1.1 408 ")

    run(scenario())


def test_a_body_that_never_completes_is_cut_off_and_the_app_sees_the_client_go() -> None:
    app = Echo()

    async def scenario() -> None:
        async with server(app) as port:
            head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n"
            answer = await exchange(port, head + b"only a little")
            assert answer == b""
            for _ in range(50):
                if app.disconnected:
                    break
                await asyncio.sleep(0.05)
            assert app.disconnected == 1

    run(scenario())


def test_conflicting_content_length_and_transfer_encoding_is_refused() -> None:
    async def scenario() -> None:
        async with server(Echo()) as port:
            smuggled = (
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"0\r\n\r\nGET /admin HTTP/1.1\r\nHost: x\r\n\r\n"
            )
            answer = await exchange(port, smuggled)
            assert answer.startswith(b"HTTP/1.1 400 ")
            assert answer.count(b"HTTP/1.1") == 1  # the smuggled second request was never served
            doubled = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"
            assert (await exchange(port, doubled)).startswith(b"HTTP/1.1 400 ")

    run(scenario())


def test_kept_alive_connections_and_normal_requests_are_unaffected() -> None:
    async def scenario() -> None:
        async with server(Echo()) as port:
            request = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
            # idle between the two requests for longer than the head timeout: that is keep-alive's business
            answer = await exchange(port, request, request, pause=0.8, read_for=1.0)
            assert answer.count(b"HTTP/1.1 200 OK") == 2
            assert answer.count(b"\r\n5\r\n") == 2

    run(scenario())


async def whole(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers a whole response, with its Content-Length (as modelyard's JSON answers are sent)."""
    if scope["type"] != "http":
        return
    await receive()
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"1")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"5"})


def test_a_whole_response_leaves_in_one_write_and_a_head_request_gets_its_head() -> None:
    writes: list[bytes] = []

    async def scenario() -> None:
        async with server(whole, counting_protocol(writes)) as port:
            request = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
            answer = await exchange(port, request, request, read_for=0.5)
            assert answer.count(b"HTTP/1.1 200 OK") == 2
            assert len(writes) == 2  # head and body together, per response
            assert all(w.startswith(b"HTTP/1.1 200 OK\r\n") and w.endswith(b"\r\n\r\n5") for w in writes)
            writes.clear()
            answer = await exchange(port, b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n", read_for=0.5)
            assert answer.startswith(b"HTTP/1.1 200 OK") and answer.endswith(b"\r\n\r\n")  # no body
            assert len(writes) == 1
            writes.clear()
            answer = await exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", read_for=0.5)
            assert len(writes) == 1 and answer.endswith(b"\r\n\r\n5")

    run(scenario())


def test_a_streamed_response_sends_its_head_before_the_first_chunk() -> None:
    head_seen = asyncio.Event()

    async def streaming(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        await head_seen.wait()  # the client must have the head while no chunk was sent yet
        await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def scenario() -> None:
        async with server(streaming) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert head.startswith(b"HTTP/1.1 200 OK") and b"transfer-encoding: chunked" in head
            head_seen.set()
            rest = await asyncio.wait_for(reader.readuntil(b"0\r\n\r\n"), 5)
            assert rest == b"9\r\ndata: 1\n\n\r\n0\r\n\r\n"
            writer.close()

    run(scenario())
