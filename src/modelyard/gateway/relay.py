"""Relay one upstream answer to the client: JSON as a whole, SSE event by event, errors re-shaped.

Everything the client must not see from the engine is normalised here: engine errors are re-shaped into
OpenAI's error body, and the usage chunk the gateway asked for on the client's behalf is dropped again.
"""

from __future__ import annotations

import logging
import time

import orjson

from modelyard.api.asgi import Send, send_bytes, send_error
from modelyard.errors import APIError, engine_unavailable, upstream_failed
from modelyard.gateway import sse
from modelyard.gateway.catalog import ServedModel
from modelyard.gateway.upstream_client import UpstreamResponse
from modelyard.observability.body_policy import MAX_BODY_BYTES
from modelyard.observability.request_record import RequestRecord
from modelyard.security.guardrails.filters import OutputGuard

log = logging.getLogger("modelyard.gateway")

SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


async def relay_json(
    send: Send,
    raw: bytes,
    served: ServedModel,
    record: RequestRecord,
    headers: list[tuple[bytes, bytes]],
    guard: OutputGuard | None = None,
) -> int:
    usage = sse.usage_of_body(raw)
    if usage:
        record_usage(record, served, usage.prompt_tokens, usage.completion_tokens)
    if guard is not None:
        try:
            raw = guard.json_body(raw)
        except APIError as error:
            return await send_failure(send, record, error, headers)
    if record.response_body is not None:
        record.response_body = raw
    await send_bytes(send, 200, raw, headers)
    return 200


async def relay_stream(
    send: Send,
    first: bytes,
    response: UpstreamResponse,
    served: ServedModel,
    record: RequestRecord,
    headers: list[tuple[bytes, bytes]],
    client_wants_usage: bool,
    guard: OutputGuard | None = None,
) -> int:
    """``first`` is the body's first piece, already read: the stream is committed only once it arrived.
    With output guardrails, events pass through the guard's hold-back window, and a blocked phrase ends the
    stream (closing the engine connection, which stops the generation)."""
    await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS + headers})
    splitter = sse.EventSplitter()
    status = 200
    data: bytes | None = first
    try:
        while data is not None:
            out = []
            for event in splitter.feed(data):
                if sse.carries_token(event):
                    record.last_token = time.perf_counter()
                    if record.first_token is None:
                        record.first_token = record.last_token
                usage = sse.usage_of_event(event)
                if usage is not None:
                    record_usage(record, served, usage.prompt_tokens, usage.completion_tokens)
                    if not client_wants_usage and sse.is_usage_only(event):
                        continue
                if guard is None:
                    out.append(event)
                else:
                    out.extend(guard.event(event))
            if guard is not None and guard.blocked:
                record.error_type = "output_blocked"
                if out:
                    await send({"type": "http.response.body", "body": b"".join(out), "more_body": True})
                break  # stop reading: release() then closes the engine connection, which stops generating
            if out:
                chunk = b"".join(out)
                if record.response_body is not None and len(record.response_body) <= MAX_BODY_BYTES:
                    record.response_body += chunk
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            data = await response.next_chunk()
    except OSError as exc:
        # Once bytes have reached the client a retry would duplicate output: report and end the stream.
        log.warning("engine stream for %s broke: %s", served.key, exc)
        status = 502
        record.error_type = "upstream_stream_broken"
        message = f"The engine serving '{served.key}' stopped mid-stream: {exc}"
        await send({"type": "http.response.body", "body": sse.error_event(message), "more_body": True})
    tail = splitter.remainder()
    if guard is not None:
        tail = b"" if guard.blocked else b"".join(guard.finish()) + tail
    await send({"type": "http.response.body", "body": tail, "more_body": False})
    return status


async def send_failure(send: Send, record: RequestRecord, error: APIError, headers: list[tuple[bytes, bytes]]) -> int:
    record.error_type = error.code or error.type
    await send_error(send, error, headers)
    return error.status


def record_usage(record: RequestRecord, served: ServedModel, prompt_tokens: int, completion_tokens: int) -> None:
    record.prompt_tokens, record.completion_tokens = prompt_tokens, completion_tokens
    cost_per_1k = prompt_tokens * served.price_input_per_1k + completion_tokens * served.price_output_per_1k
    record.cost_usd = cost_per_1k / 1000


def engine_error(model: str, status: int, raw: bytes) -> APIError:
    """Engines report errors in slightly different shapes (llama-server uses an integer ``code``)."""
    message, type_ = raw.decode(errors="replace")[:500] or f"HTTP {status}", None
    try:
        payload = orjson.loads(raw)
        detail = payload.get("error", payload) if isinstance(payload, dict) else {}
        if isinstance(detail, dict):
            message = str(detail.get("message", message))
            type_ = detail.get("type")
    except orjson.JSONDecodeError:
        pass
    if status == 503:
        return engine_unavailable(model, 2, message)
    if status >= 500 and status != 501:
        return upstream_failed(model, message)
    code = "not_supported" if type_ == "not_supported_error" else "engine_rejected_request"
    return APIError(status if status != 501 else 400, message, type="invalid_request_error", code=code)
