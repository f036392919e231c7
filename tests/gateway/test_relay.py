"""Broken upstream answers, before and after the first byte (gateway/relay.py, through forward): a stream that
breaks after its first event ends with an OpenAI-shaped SSE error event (never a silent truncation) and is
counted; garbage or a truncated answer before the first byte is an attempt failure, retried elsewhere."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import orjson

from inprocess import chat, serving
from mock_upstreams import MockUpstream

FIRST_EVENT = b'data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hi"}}]}\n\n'


async def _cutting_upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers one streamed request with a chunked SSE body, one event, then drops the connection."""
    await reader.readuntil(b"\r\n\r\n")
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    writer.write(head + b"%x\r\n" % len(FIRST_EVENT) + FIRST_EVENT + b"\r\n")
    await writer.drain()
    await asyncio.sleep(0.05)
    writer.transport.abort()  # reset, mid-body


def test_a_stream_cut_after_its_first_byte_ends_with_an_error_event_and_is_counted() -> None:
    async def scenario() -> None:
        server = await asyncio.start_server(_cutting_upstream, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        routes = f'routes:\n  m:\n    targets:\n      only: {{url: "http://127.0.0.1:{port}/v1"}}\n'
        try:
            async with serving(deployments=routes) as gateway:
                answer = await gateway.client.post("/v1/chat/completions", json=chat("m", stream=True))
                assert answer.status_code == 200
                events = [e for e in answer.content.split(b"\n\n") if e]
                assert events[0] + b"\n\n" == FIRST_EVENT
                error = orjson.loads(events[-1].removeprefix(b"data: "))["error"]
                assert set(error) == {"message", "type", "param", "code"}
                assert error["code"] == "upstream_error" and "stopped mid-stream" in error["message"]
                assert gateway.metric("modelyard_request_errors_total", error_type="upstream_stream_broken") == 1
        finally:
            server.close()

    asyncio.run(asyncio.wait_for(scenario(), 30))


async def _garbage_upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Not HTTP at all."""
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"\x00\xffSSH-2.0-nonsense\r\n\r\n")
    await writer.drain()
    writer.close()


async def _truncated_upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A whole (non-streamed) answer that announces 400 bytes and closes after 20."""
    await reader.readuntil(b"\r\n\r\n")
    writer.write(
        b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 400\r\n\r\n{"id":"c1","choices"'
    )
    await writer.drain()
    writer.close()


def test_garbage_or_a_truncated_answer_before_the_first_byte_is_retried_elsewhere(
    mocks: Callable[..., MockUpstream],
) -> None:
    """Nothing reached the client yet: the attempt fails, the next replica answers, the client never sees it."""
    healthy = mocks()

    async def scenario() -> None:
        servers = [await asyncio.start_server(h, "127.0.0.1", 0) for h in (_garbage_upstream, _truncated_upstream)]
        urls = [f"http://127.0.0.1:{s.sockets[0].getsockname()[1]}/v1" for s in servers]
        routes = "routes:\n" + "".join(
            f'  {name}:\n    targets:\n      bad: {{url: "{url}"}}\n      good: {{url: "{healthy.url}", weight: 0}}\n'
            "    fallbacks: [good]\n"
            for name, url in zip(("garbage", "truncated"), urls, strict=True)
        )
        try:
            async with serving(deployments=routes) as gateway:
                for route in ("garbage", "truncated"):
                    answer = await gateway.client.post("/v1/chat/completions", json=chat(route))
                    assert answer.status_code == 200, answer.text
                    assert answer.headers["x-modelyard-target"] == "good"
                    assert answer.headers["x-modelyard-attempts"] == "2"
                    answer.json()
        finally:
            for server in servers:
                server.close()

    asyncio.run(asyncio.wait_for(scenario(), 30))
