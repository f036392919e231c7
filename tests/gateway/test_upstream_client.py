"""The gateway's upstream HTTP client against a tiny in-process server: reuse, chunked bodies, stale connections,
abandoned responses and connect failures."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from modelyard.gateway.upstream_client import UpstreamClientSettings, UpstreamError, create_session
from modelyard.sse import Usage, usage_of_body

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return await reader.readexactly(length)


def _json(body: bytes, keep_alive: bool = True) -> bytes:
    connection = b"keep-alive" if keep_alive else b"close"
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: %s\r\n\r\n%s" % (len(body), connection, body)


async def _serve(handler: Handler) -> tuple[asyncio.Server, str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}"


def test_keep_alive_connection_is_reused() -> None:
    async def scenario() -> None:
        connections = 0

        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal connections
            connections += 1
            try:
                while True:
                    body = await _read_request(reader)
                    writer.write(_json(body))
                    await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError):
                writer.close()

        server, base = await _serve(echo)
        client = create_session(UpstreamClientSettings())
        for index in range(3):
            response = await client.post(base + "/v1/completions", b'{"n":%d}' % index)
            assert response.status == 200
            assert await response.read() == b'{"n":%d}' % index
            response.release()
        assert connections == 1
        await client.close()
        server.close()

    asyncio.run(scenario())


def test_chunked_body_is_dechunked_as_it_arrives() -> None:
    async def scenario() -> None:
        async def stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await _read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for part in (b"data: a\n\n", b"data: b\n\n"):
                writer.write(b"%x\r\n%s\r\n" % (len(part), part))
                await writer.drain()
                await asyncio.sleep(0.01)
            writer.write(b"0\r\n\r\n")
            await writer.drain()

        server, base = await _serve(stream)
        client = create_session(UpstreamClientSettings())
        response = await client.post(base + "/v1/chat/completions", b"{}")
        parts = [part async for part in response.iter_any()]
        assert b"".join(parts) == b"data: a\n\ndata: b\n\n"
        assert len(parts) == 2  # relayed as they came, not buffered to the end
        response.release()
        await client.close()
        server.close()

    asyncio.run(scenario())


def test_idle_connection_closed_by_upstream_is_replaced_once() -> None:
    async def scenario() -> None:
        async def one_answer_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            body = await _read_request(reader)
            writer.write(_json(body))  # says keep-alive, then closes anyway (an upstream's idle timeout)
            await writer.drain()
            writer.close()

        server, base = await _serve(one_answer_then_close)
        client = create_session(UpstreamClientSettings())
        for _ in range(2):
            response = await client.post(base + "/x", b"{}")
            assert await response.read() == b"{}"
            response.release()
            await asyncio.sleep(0.05)
        await client.close()
        server.close()

    asyncio.run(scenario())


def test_closing_an_unfinished_response_closes_the_upstream_connection() -> None:
    async def scenario() -> None:
        upstream_saw_close = asyncio.Event()

        async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await _read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
            await writer.drain()
            if await reader.read(1) == b"":
                upstream_saw_close.set()

        server, base = await _serve(endless)
        client = create_session(UpstreamClientSettings())
        response = await client.post(base + "/x", b"{}")
        async for part in response.iter_any():
            assert part == b"hello"
            break
        response.close()
        await asyncio.wait_for(upstream_saw_close.wait(), 5)
        await client.close()
        server.close()

    asyncio.run(scenario())


def test_unreachable_upstream_is_an_upstream_error() -> None:
    async def scenario() -> None:
        server, base = await _serve(lambda r, w: asyncio.sleep(0))
        server.close()
        await server.wait_closed()
        client = create_session(UpstreamClientSettings(connect_timeout_s=1))
        with pytest.raises(UpstreamError):
            await client.post(base + "/x", b"{}")
        await client.close()

    asyncio.run(scenario())


def test_usage_is_read_from_a_whole_answer() -> None:
    body = b'{"choices":[{"text":"' + b"x" * 1000 + b'"}],"usage":{"prompt_tokens":7,"completion_tokens":3}}'
    assert usage_of_body(body) == Usage(7, 3)
    assert usage_of_body(b'{"choices":[]}') is None
    assert usage_of_body(b'{"usage":null}') is None
    assert usage_of_body(b"not json") is None
    assert usage_of_body(b'{"usage":{"prompt_tokens":null,"completion_tokens":2}}') == Usage(0, 2)
