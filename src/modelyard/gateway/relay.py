"""Stage 6, relay: one upstream answer to the client — JSON as a whole, SSE event by event.

Everything the client must not see from the engine is normalised here: the usage chunk the gateway asked for on
the client's behalf is dropped again, and output guardrails see the text before the client does. While events
pass, the exchange learns the first and last token's time and the token usage.
"""

from __future__ import annotations

import logging

from modelyard import sse
from modelyard.asgi import Headers, Send, send_bytes
from modelyard.gateway.exchange import Exchange
from modelyard.gateway.shaper import AnswerShaper
from modelyard.gateway.upstream_call import OpenCall
from modelyard.routing.model import ServedModel
from modelyard.security.guardrails.filters import OutputGuard

log = logging.getLogger("modelyard.gateway")

SSE_HEADERS: Headers = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


async def relay_json(
    send: Send,
    exchange: Exchange,
    raw: bytes,
    served: ServedModel,
    guard: OutputGuard | None = None,
    shaper: AnswerShaper | None = None,
) -> int:
    """A whole answer. A blocked answer raises the guardrail's error before anything is sent."""
    if shaper is not None:
        raw = shaper.json(raw)
    usage = sse.usage_of_body(raw)
    if usage:
        exchange.count_usage(served, usage.prompt_tokens, usage.completion_tokens)
    if guard is not None:
        raw = guard.json_body(raw)
    exchange.keep_response(raw)
    await send_bytes(send, 200, raw, exchange.headers())
    return 200


async def relay_stream(
    send: Send,
    exchange: Exchange,
    call: OpenCall,
    served: ServedModel,
    client_wants_usage: bool,
    guard: OutputGuard | None = None,
    shaper: AnswerShaper | None = None,
) -> int:
    """``call.first`` is the body's first piece, already read: the stream is committed only once it arrived.
    With output guardrails, events pass through the guard's hold-back window, and a blocked phrase ends the
    stream (closing the engine connection, which stops the generation)."""
    await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS + exchange.headers()})
    splitter = sse.EventSplitter()
    status = 200
    data: bytes | None = call.first
    try:
        while data is not None:
            out = []
            events = splitter.feed(data)
            if shaper is not None:
                events = shaper.events(events)
            for event in events:
                if sse.carries_token(event):
                    exchange.token_seen()
                usage = sse.usage_of_event(event)
                if usage is not None:
                    exchange.count_usage(served, usage.prompt_tokens, usage.completion_tokens)
                    if not client_wants_usage and sse.is_usage_only(event):
                        continue
                if guard is None:
                    out.append(event)
                else:
                    out.extend(guard.event(event))
            if guard is not None and guard.blocked:
                exchange.failed("output_blocked")
                if out:
                    await send({"type": "http.response.body", "body": b"".join(out), "more_body": True})
                break  # stop reading: the connection is then closed, which stops the generation
            if out:
                chunk = b"".join(out)
                exchange.keep_response_piece(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            data = await call.next_chunk()
    except OSError as exc:
        # Once bytes have reached the client a retry would duplicate output: report and end the stream.
        log.warning("engine stream for %s broke: %s", served.key, exc)
        status = 502
        exchange.failed("upstream_stream_broken")
        message = f"The engine serving '{served.key}' stopped mid-stream: {exc}"
        await send({"type": "http.response.body", "body": sse.error_event(message), "more_body": True})
    tail = splitter.remainder()
    if guard is not None:
        tail = b"" if guard.blocked else b"".join(guard.finish()) + tail
    await send({"type": "http.response.body", "body": tail, "more_body": False})
    return status
