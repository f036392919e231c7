"""The relay stage (gateway/relay.py) when an upstream's stream breaks after its first event: the client's stream
ends with an OpenAI-shaped SSE error event (never a silent truncation), and the break is counted."""

from __future__ import annotations

import asyncio

import orjson

from inprocess import chat, serving

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
