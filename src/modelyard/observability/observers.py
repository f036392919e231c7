"""Everything that happens once a request has finished: metrics, its log line, its request-log row.

The handler calls one function with the finished :class:`RequestRecord`; each observer only reads it, and none
does I/O on the event loop (the log line goes through the logging queue, the row through the request log's
bounded queue).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from modelyard.observability.body_policy import BodyPolicy
from modelyard.observability.metrics import GatewayMetrics
from modelyard.observability.request_lines import RequestLineWriter
from modelyard.observability.request_log import RequestLogSettings, RequestLogWriter
from modelyard.observability.request_log_store import RequestLogStore
from modelyard.observability.request_record import RequestRecord
from modelyard.observability.tracing import SpanExporter


@dataclass(frozen=True)
class ObservabilityOptions:
    log_requests: bool = True
    log_format: str = "text"
    request_log: RequestLogSettings | None = field(default_factory=RequestLogSettings)  # None: not stored
    bodies: BodyPolicy = field(default_factory=BodyPolicy)
    otlp_endpoint: str | None = None  # export spans over OTLP/HTTP; None: no spans, no SDK loaded


class RequestObservers:
    """Owns every per-request observer and the background writers behind them (started and stopped together)."""

    def __init__(
        self,
        metrics: GatewayMetrics,
        lines: RequestLineWriter | None = None,
        request_log: RequestLogWriter | None = None,
        bodies: BodyPolicy | None = None,
        spans: SpanExporter | None = None,
    ) -> None:
        self._metrics = metrics
        self.lines = lines
        self.request_log = request_log
        self.spans = spans
        self._bodies = bodies if request_log is not None and bodies is not None else BodyPolicy()

    @classmethod
    def build(
        cls, metrics: GatewayMetrics, options: ObservabilityOptions, requests: RequestLogStore | None
    ) -> RequestObservers:
        lines = None
        if options.log_requests and RequestLineWriter.wanted():
            lines = RequestLineWriter(options.log_format)
        request_log = None
        if options.request_log is not None and requests is not None:
            request_log = RequestLogWriter(requests, metrics, options.request_log)
        spans = SpanExporter(options.otlp_endpoint) if options.otlp_endpoint else None
        return cls(metrics, lines=lines, request_log=request_log, bodies=options.bodies, spans=spans)

    async def start(self) -> None:
        if self.request_log is not None:
            await self.request_log.start()
        if self.lines is not None:
            await self.lines.start()

    async def stop(self) -> None:
        """Write what is queued; the span exporter flushes its last batch from a thread."""
        if self.request_log is not None:
            await self.request_log.stop()
        if self.lines is not None:
            await self.lines.stop()
        if self.spans is not None:
            await asyncio.to_thread(self.spans.shutdown)

    def keep_bodies(self, route: str, request_id: str) -> bool:
        """Whether this request's bodies go to the request log (never when there is no request log)."""
        return self._bodies.keep_bodies(route, request_id) if self._bodies.rules else False

    def shadow(self, record: RequestRecord) -> None:
        """A shadow copy's record: logged and stored next to its primary, but not counted as client traffic
        (its own metrics are the modelyard_shadow_* families)."""
        if self.lines is not None:
            self.lines.offer(record)
        if self.request_log is not None:
            self.request_log.offer(record)

    def __call__(self, record: RequestRecord) -> None:
        self._metrics.observe(record)
        if self.lines is not None:
            self.lines.offer(record)
        if self.request_log is not None:
            self.request_log.offer(record)
        if self.spans is not None:
            self.spans(record)
