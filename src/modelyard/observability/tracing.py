"""Trace identity for every request, and OpenTelemetry spans when an OTLP endpoint is configured.

Every request gets a trace id at arrival — the caller's, from a W3C ``traceparent``, or a fresh one — returned in
``x-modelyard-trace-id`` and written in its log line, so one slow request can be followed even without a tracing
backend. With an endpoint (``--otlp-endpoint`` or the standard ``OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT``), the
finished request is also exported as three spans — the gateway request (SERVER), the routing decision and the
engine call (CLIENT) — carrying the OpenTelemetry GenAI attributes. The spans are built *after* the request from
the timestamps it already recorded, with that same trace id: the hot path pays nothing for tracing, and with no
endpoint the OpenTelemetry SDK is not even imported.
"""

from __future__ import annotations

import os
import random
import re
import time
from typing import TYPE_CHECKING, Any

from modelyard.observability.request_record import RequestRecord

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.id_generator import IdGenerator
else:
    IdGenerator = object  # the SDK is imported only once an endpoint is configured; it duck-types id generators

_TRACEPARENT = re.compile(rb"^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")
_INVALID_TRACE_ID = "0" * 32
_INVALID_SPAN_ID = "0" * 16
ENDPOINT_ENV = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
OPERATIONS = {"chat": "chat", "completions": "text_completion", "embeddings": "embeddings"}


def parse_traceparent(traceparent: bytes | None) -> tuple[str, str | None]:
    """(trace id, caller's span id) from a W3C ``traceparent``, or a fresh trace id and no parent."""
    if traceparent:
        match = _TRACEPARENT.match(traceparent.strip().lower())
        if match:
            trace_id, parent = match.group(1).decode(), match.group(2).decode()
            if trace_id != _INVALID_TRACE_ID and parent != _INVALID_SPAN_ID:
                return trace_id, parent
    return f"{random.getrandbits(128):032x}", None  # as OpenTelemetry's own RandomIdGenerator: no syscall


def otlp_endpoint(explicit: str | None) -> str | None:
    if explicit:
        return explicit
    return next((os.environ[name] for name in ENDPOINT_ENV if os.environ.get(name)), None)


class SpanExporter:
    """Turns finished request records into OTLP spans (batched and sent by the SDK's exporter thread)."""

    def __init__(self, endpoint: str, service_name: str = "modelyard") -> None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        if "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" not in os.environ and not endpoint.rstrip("/").endswith("/v1/traces"):
            endpoint = endpoint.rstrip("/") + "/v1/traces"  # the base endpoint convention of the OTLP/HTTP spec
        self._ids = _PresetTraceIds()
        self.provider: TracerProvider = TracerProvider(
            resource=Resource.create({"service.name": service_name}), id_generator=self._ids
        )
        self.provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
        self._tracer = self.provider.get_tracer("modelyard")
        # perf_counter → wall clock, for span timestamps from the record's monotonic readings
        self._offset_ns = time.time_ns() - int(time.perf_counter() * 1e9)

    def __call__(self, record: RequestRecord) -> None:
        from opentelemetry import trace
        from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags

        def ns(moment: float) -> int:
            return self._offset_ns + int(moment * 1e9)

        trace_id = int(record.trace_id, 16)
        parent = None
        if record.parent_span_id:
            remote = SpanContext(trace_id, int(record.parent_span_id, 16), True, TraceFlags(TraceFlags.SAMPLED))
            parent = trace.set_span_in_context(NonRecordingSpan(remote))
        operation = OPERATIONS.get(record.endpoint, record.endpoint)
        end = ns(record.finished or record.received)
        self._ids.next_trace_id = trace_id
        server = self._tracer.start_span(
            f"{operation} {record.route}",
            context=parent,
            kind=SpanKind.SERVER,
            start_time=ns(record.received),
            attributes=_server_attributes(record, operation),
        )
        if record.status >= 500 or record.error_type == "internal_error":
            server.set_status(Status(StatusCode.ERROR, record.error_type or None))
        inside = trace.set_span_in_context(server)
        if record.routed is not None:
            route = self._tracer.start_span(
                "route",
                context=inside,
                start_time=ns(record.received),
                attributes={
                    "modelyard.route": record.route,
                    "modelyard.target": record.target,
                    "modelyard.version": record.version,
                },
            )
            route.end(end_time=ns(record.routed))
        if record.dispatched is not None:
            call = self._tracer.start_span(
                f"{operation} {record.target}",
                context=inside,
                kind=SpanKind.CLIENT,
                start_time=ns(record.dispatched),
                attributes={
                    "gen_ai.operation.name": operation,
                    "gen_ai.provider.name": "llama.cpp",
                    "gen_ai.request.model": record.target,
                    "modelyard.attempts": record.attempts,
                },
            )
            if record.first_token is not None:
                call.add_event("first_token", timestamp=ns(record.first_token))
            call.end(end_time=end)
        server.end(end_time=end)

    def shutdown(self) -> None:
        self.provider.shutdown()


def _server_attributes(record: RequestRecord, operation: str) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": operation,
        "gen_ai.provider.name": "llama.cpp",
        "gen_ai.request.model": record.route,
        "http.request.method": "POST",
        "http.response.status_code": record.status,
        "modelyard.request_id": record.request_id,
        "modelyard.stream": record.stream,
    }
    if record.target:
        attributes["gen_ai.response.model"] = record.target
        attributes["modelyard.version"] = record.version
    if record.prompt_tokens or record.completion_tokens:
        attributes["gen_ai.usage.input_tokens"] = record.prompt_tokens
        attributes["gen_ai.usage.output_tokens"] = record.completion_tokens
    if record.error_type:
        attributes["error.type"] = record.error_type
    if record.ttft_s is not None and record.stream:
        attributes["gen_ai.server.time_to_first_token"] = record.ttft_s
    return attributes


class _PresetTraceIds(IdGenerator):
    """Root spans take the trace id the request was given at arrival (already sent to the client)."""

    def __init__(self) -> None:
        from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

        self._random = RandomIdGenerator()
        self.next_trace_id = 0

    def generate_span_id(self) -> int:
        return self._random.generate_span_id()

    def generate_trace_id(self) -> int:
        return self.next_trace_id or self._random.generate_trace_id()

    def is_trace_id_random(self) -> bool:
        # A caller's trace id need not be random, so never claim it (the SDK's default; newer SDKs ask).
        return False
