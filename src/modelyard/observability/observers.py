"""Everything that happens once a request has finished: metrics, its log line, its request-log row, its trace.

The handler calls one function with the finished :class:`RequestRecord`. Metrics are counted in place (a few
additions); the log line and the row are handed to the record shipper, which sends them to a writer process in
batches (``record_shipper.py``); spans go to the OpenTelemetry SDK's batch processor. Nothing here does I/O on
the event loop.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from sqlalchemy.engine import URL

from modelyard.observability.body_policy import BodyPolicy
from modelyard.observability.metrics import GatewayMetrics
from modelyard.observability.record_shipper import RecordShipper, RequestLogSettings, ShipperTargets
from modelyard.observability.request_lines import lines_wanted
from modelyard.observability.request_record import RequestRecord
from modelyard.observability.tracing import SpanExporter


@dataclass(frozen=True)
class ObservabilityOptions:
    log_requests: bool = True
    log_format: str = "text"
    log_level: str = "info"
    request_log: RequestLogSettings | None = field(default_factory=RequestLogSettings)  # None: not stored
    bodies: BodyPolicy = field(default_factory=BodyPolicy)
    otlp_endpoint: str | None = None  # export spans over OTLP/HTTP; None: no spans, no SDK loaded


class RequestObservers:
    """Owns every per-request observer and the background writers behind them (started and stopped together)."""

    def __init__(
        self,
        metrics: GatewayMetrics,
        shipper: RecordShipper | None = None,
        bodies: BodyPolicy | None = None,
        spans: SpanExporter | None = None,
        stores_rows: bool = False,
    ) -> None:
        self._metrics = metrics
        self.shipper = shipper
        self.spans = spans
        self._bodies = bodies if stores_rows and bodies is not None else BodyPolicy()

    @classmethod
    def build(cls, metrics: GatewayMetrics, options: ObservabilityOptions, database: URL | None) -> RequestObservers:
        """``database``: where the request log is stored (None, or ``options.request_log`` None: not stored)."""
        lines = options.log_requests and lines_wanted()
        stored = database if options.request_log is not None else None
        shipper = None
        if lines or stored is not None:
            targets = ShipperTargets(lines, stored, options.log_level, options.log_format)
            shipper = RecordShipper(targets, metrics, options.request_log or RequestLogSettings())
        spans = SpanExporter(options.otlp_endpoint) if options.otlp_endpoint else None
        return cls(metrics, shipper=shipper, bodies=options.bodies, spans=spans, stores_rows=stored is not None)

    async def start(self) -> None:
        if self.shipper is not None:
            await self.shipper.start()

    async def stop(self) -> None:
        """Write what is queued; the span exporter flushes its last batch from a thread."""
        if self.shipper is not None:
            await self.shipper.stop()
        if self.spans is not None:
            await asyncio.to_thread(self.spans.shutdown)

    def keep_bodies(self, route: str, request_id: str) -> bool:
        """Whether this request's bodies go to the request log (never when there is no request log)."""
        return self._bodies.keep_bodies(route, request_id) if self._bodies.rules else False

    def shadow(self, record: RequestRecord) -> None:
        """A shadow copy's record: logged and stored next to its primary, but not counted as client traffic
        (its own metrics are the modelyard_shadow_* families)."""
        if self.shipper is not None:
            self.shipper.offer(record)

    def __call__(self, record: RequestRecord) -> None:
        self._metrics.observe(record)
        if self.shipper is not None:
            self.shipper.offer(record)
        if self.spans is not None:
            self.spans(record)
