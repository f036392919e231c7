"""A fast mock of an OpenAI-compatible engine, so that benchmarks measure the gateway and not the upstream.

It speaks the real HTTP protocol the gateway speaks to llama-server: ``POST /v1/chat/completions`` and
``POST /v1/completions`` (JSON, or SSE with chunked transfer encoding, including the ``stream_options.include_usage``
usage chunk and ``data: [DONE]``), ``GET /v1/models`` and ``GET /health``, over HTTP/1.1 keep-alive.

It is a raw asyncio protocol with httptools' parser on uvloop rather than a web framework: per request it parses the
JSON body (to honour ``stream``, ``max_tokens`` and ``include_usage``) and writes one pre-shaped response, which keeps
it several times faster than the gateway under test. ``--latency-ms`` delays JSON answers and the first streamed
token; ``--token-rate`` paces streamed tokens (0 = as fast as possible).

    python -m bench.mock_upstream --port 9100 [--latency-ms 0] [--token-rate 0] [--tokens 16]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import time
from dataclasses import dataclass
from typing import Any

import httptools
import orjson
import uvloop

TOKEN = "tok "  # one token of generated text; a stream of N tokens carries N of these


@dataclass(frozen=True)
class MockSettings:
    latency_ms: float = 0.0  # before a JSON answer, and before the first streamed token
    token_rate: float = 0.0  # streamed tokens per second per request; 0 = no pacing
    default_tokens: int = 16  # completion length when the request sets no max_tokens
    model: str = "mock-model"
    fail_status: int = 0  # answer every request (health included) with this status: a sick upstream for tests
    port: int = 0  # where it listens (named in answer ids, so a test can see which replica answered)


def _status_line(status: int) -> bytes:
    reason = {200: b"OK", 400: b"Bad Request", 404: b"Not Found", 405: b"Method Not Allowed"}.get(status, b"Error")
    return b"HTTP/1.1 %d %s\r\n" % (status, reason)


def json_response(status: int, body: bytes, keep_alive: bool) -> bytes:
    connection = b"keep-alive" if keep_alive else b"close"
    return b"".join(
        (
            _status_line(status),
            b"content-type: application/json\r\ncontent-length: %d\r\nconnection: %s\r\n\r\n" % (len(body), connection),
            body,
        )
    )


SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\nconnection: keep-alive\r\n\r\n"
)


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


@dataclass(frozen=True)
class Generation:
    """What one request asked for, reduced to what shapes the answer."""

    chat: bool
    model: str
    tokens: int
    prompt_tokens: int
    stream: bool
    include_usage: bool

    @classmethod
    def of(cls, chat: bool, payload: dict[str, Any], body_size: int, settings: MockSettings) -> Generation:
        options = payload.get("stream_options") or {}
        tokens = payload.get("max_tokens") or payload.get("max_completion_tokens") or settings.default_tokens
        return cls(
            chat=chat,
            model=str(payload.get("model") or settings.model),
            tokens=max(1, int(tokens)),
            prompt_tokens=max(1, body_size // 4),
            stream=bool(payload.get("stream")),
            include_usage=bool(options.get("include_usage")) if isinstance(options, dict) else False,
        )

    def usage(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.tokens,
            "total_tokens": self.prompt_tokens + self.tokens,
        }

    def whole(self, request_id: str) -> bytes:
        text = TOKEN * self.tokens
        if self.chat:
            choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": text}}
            kind = "chat.completion"
        else:
            choice = {"index": 0, "text": text, "logprobs": None}
            kind = "text_completion"
        choice["finish_reason"] = "length"
        return orjson.dumps(
            {
                "id": request_id,
                "object": kind,
                "created": int(time.time()),
                "model": self.model,
                "choices": [choice],
                "usage": self.usage(),
            }
        )

    def events(self, request_id: str) -> tuple[bytes, bytes, bytes]:
        """(token event, final event with finish_reason, tail: optional usage event + [DONE]) as SSE bytes."""
        kind = "chat.completion.chunk" if self.chat else "text_completion"
        created = int(time.time())

        def event(choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> bytes:
            payload: dict[str, Any] = {
                "id": request_id,
                "object": kind,
                "created": created,
                "model": self.model,
                "choices": choices,
            }
            if usage is not None:
                payload["usage"] = usage
            return b"data: " + orjson.dumps(payload) + b"\n\n"

        if self.chat:
            token = event([{"index": 0, "delta": {"content": TOKEN}, "finish_reason": None}])
            final = event([{"index": 0, "delta": {}, "finish_reason": "length"}])
        else:
            token = event([{"index": 0, "text": TOKEN, "finish_reason": None}])
            final = event([{"index": 0, "text": "", "finish_reason": "length"}])
        tail = (event([], self.usage()) if self.include_usage else b"") + b"data: [DONE]\n\n"
        return token, final, tail


class MockProtocol(asyncio.Protocol):
    """One client connection: parse requests with httptools, answer each in order."""

    def __init__(self, settings: MockSettings, ids: itertools.count[int]) -> None:
        self._settings = settings
        self._ids = ids
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._url = b""
        self._body: list[bytes] = []
        self._busy: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if self._busy is not None:
            self._busy.cancel()
        self._transport = None

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self._write(json_response(400, b'{"error":{"message":"bad HTTP"}}', keep_alive=False))
            self._close()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._url = b""
        self._body = []

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        method = self._parser.get_method()
        keep_alive = self._parser.should_keep_alive()
        path = self._url.split(b"?", 1)[0]
        if self._settings.fail_status:
            body = b'{"error":{"message":"injected failure","type":"server_error"}}'
            self._answer(json_response(self._settings.fail_status, body, keep_alive), keep_alive)
        elif method == b"GET" and path == b"/health":
            self._answer(json_response(200, b'{"status":"ok"}', keep_alive), keep_alive)
        elif method == b"GET" and path == b"/v1/models":
            body = orjson.dumps({"object": "list", "data": [{"id": self._settings.model, "object": "model"}]})
            self._answer(json_response(200, body, keep_alive), keep_alive)
        elif method == b"POST" and path in (b"/v1/chat/completions", b"/v1/completions"):
            self._generate(path == b"/v1/chat/completions", b"".join(self._body), keep_alive)
        else:
            status = 405 if path in (b"/v1/chat/completions", b"/v1/completions") else 404
            self._answer(json_response(status, b'{"error":{"message":"no such route"}}', keep_alive), keep_alive)

    def _generate(self, chat: bool, body: bytes, keep_alive: bool) -> None:
        try:
            payload = orjson.loads(body)
            if not isinstance(payload, dict):
                raise ValueError("not an object")
            generation = Generation.of(chat, payload, len(body), self._settings)
        except (ValueError, TypeError):
            self._answer(json_response(400, b'{"error":{"message":"bad JSON"}}', keep_alive), keep_alive)
            return
        request_id = f"cmpl-mock{self._settings.port}-{next(self._ids)}"  # the port tells replicas apart
        if generation.stream:
            self._busy = asyncio.ensure_future(self._stream(generation, request_id, keep_alive))
        elif self._settings.latency_ms > 0:
            self._busy = asyncio.ensure_future(self._delayed(generation, request_id, keep_alive))
        else:
            self._answer(json_response(200, generation.whole(request_id), keep_alive), keep_alive)

    async def _delayed(self, generation: Generation, request_id: str, keep_alive: bool) -> None:
        await asyncio.sleep(self._settings.latency_ms / 1000)
        self._answer(json_response(200, generation.whole(request_id), keep_alive), keep_alive)
        self._busy = None

    async def _stream(self, generation: Generation, request_id: str, keep_alive: bool) -> None:
        token, final, tail = generation.events(request_id)
        self._write(SSE_HEAD)
        loop = asyncio.get_running_loop()
        start = loop.time() + self._settings.latency_ms / 1000
        interval = 1 / self._settings.token_rate if self._settings.token_rate > 0 else 0.0
        for index in range(generation.tokens):
            delay = start + index * interval - loop.time()  # absolute schedule: pacing does not drift
            if delay > 0:
                await asyncio.sleep(delay)
            elif index % 64 == 63:
                await asyncio.sleep(0)  # unpaced streams still let other connections run
            self._write(chunk(token))
        self._write(chunk(final + tail) + b"0\r\n\r\n")
        self._busy = None
        if not keep_alive:
            self._close()

    def _answer(self, response: bytes, keep_alive: bool) -> None:
        self._write(response)
        if not keep_alive:
            self._close()

    def _write(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def _close(self) -> None:
        if self._transport is not None:
            self._transport.close()


async def serve(host: str, port: int, settings: MockSettings) -> None:
    loop = asyncio.get_running_loop()
    ids = itertools.count()
    server = await loop.create_server(lambda: MockProtocol(settings, ids), host, port, backlog=4096, reuse_address=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay before a JSON answer / first token")
    parser.add_argument("--token-rate", type=float, default=0.0, help="streamed tokens/s per request (0: unpaced)")
    parser.add_argument("--tokens", type=int, default=16, help="completion tokens when max_tokens is not set")
    parser.add_argument("--model", default="mock-model")
    parser.add_argument("--fail-status", type=int, default=0, help="answer everything with this HTTP status")
    args = parser.parse_args(argv)
    settings = MockSettings(args.latency_ms, args.token_rate, args.tokens, args.model, args.fail_status, args.port)
    uvloop.run(serve(args.host, args.port, settings))


if __name__ == "__main__":
    main()
