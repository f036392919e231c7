"""What the gateway learns about one inference request, filled in as it happens.

One mutable record per request, written by the handler (identity, route, outcome) and the proxy (dispatch time,
first and last token, usage), then handed once to every observer: metrics, the JSON request log line, the
stored request log, the trace. Keeping the facts in one place means every observer reports the same numbers.
It is a msgspec struct encoded as an array because finished records cross a pipe to the record writer process
(``record_writer.py``) in batches: encoding one costs well under a microsecond of the event loop's time.
"""

from __future__ import annotations

import msgspec

UNKNOWN = "_unknown"  # route/model label for requests that never resolved a model (bounded labels)


class RequestRecord(msgspec.Struct, array_like=True, gc=False):
    request_id: str
    trace_id: str
    endpoint: str
    received: float  # perf_counter() at arrival
    received_at: float  # wall clock at arrival (for logs and the stored request log)
    route: str = UNKNOWN  # the model id the client sent, once it resolved
    model: str = UNKNOWN
    version: str = ""
    target: str = ""  # the engine that served it (name:version)
    stream: bool = False
    parent_span_id: str | None = None  # the caller's span, from its traceparent
    status: int = 0
    error_type: str = ""  # the OpenAI error ``code`` when the request failed
    routed: float | None = None  # model resolved
    dispatched: float | None = None  # upstream call started
    first_token: float | None = None
    last_token: float | None = None
    finished: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    attempts: int = 0
    cost_usd: float = 0.0
    request_body: bytes | None = None  # kept only when the request-log policy asks for bodies
    response_body: bytes | None = None
    shadow_of: str | None = None  # a shadow copy's primary request id
    outputs_match: bool | None = None  # shadow copies: whether the answer equals the primary's
    similarity: float | None = None  # shadow copies: 0..1 text similarity to the primary's answer
    key_id: str = ""  # the caller's API key ("" when auth is off): only it may give feedback on the answer

    @property
    def duration_s(self) -> float:
        return (self.finished or self.received) - self.received

    @property
    def ttft_s(self) -> float | None:
        return None if self.first_token is None else self.first_token - self.received

    @property
    def queued_s(self) -> float | None:
        """Time spent in the gateway before the engine was called (body read, validation, routing)."""
        return None if self.dispatched is None else self.dispatched - self.received

    @property
    def time_per_output_token_s(self) -> float | None:
        """Mean time between output tokens after the first (OpenTelemetry's time_per_output_token)."""
        if self.first_token is None or self.last_token is None or self.completion_tokens < 2:
            return None
        return (self.last_token - self.first_token) / (self.completion_tokens - 1)

    @property
    def output_tokens_per_s(self) -> float | None:
        """Decode speed. Streams: tokens after the first over the time between first and last token (prefill
        excluded); whole answers: all output tokens over the engine call."""
        per_token = self.time_per_output_token_s
        if per_token is not None:
            return 1.0 / per_token if per_token > 0 else None
        if self.completion_tokens < 1 or self.dispatched is None or self.finished is None:
            return None
        span = self.finished - self.dispatched
        return self.completion_tokens / span if span > 0 else None

    @property
    def status_class(self) -> str:
        return f"{self.status // 100}xx" if self.status else "unknown"
