"""Everything that happens once a request has finished: metrics, its log line, its request-log row, its trace.

The handler calls one function with the finished :class:`RequestRecord`. Metrics are counted in place (a few
additions); the log line and the row are handed to the record shipper, which sends them to a writer process in
batches (``record_shipper.py``); spans go to the OpenTelemetry SDK's batch processor. Nothing here does I/O on
the event loop.
"""

from __future__ import annotations

import asyncio

from sqlalchemy.engine import URL

from modelyard.observability.body_policy import BodyPolicy
from modelyard.observability.metrics import GatewayMetrics
from modelyard.observability.record_shipper import RecordShipper, ShipperTargets, ShipperTuning
from modelyard.observability.request_lines import lines_wanted
from modelyard.observability.request_record import RequestRecord
from modelyard.observability.settings import ObservabilitySettings
from modelyard.observability.tracing import SpanExporter, otlp_endpoint


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
    def build(cls, metrics: GatewayMetrics, settings: ObservabilitySettings, database: URL | None) -> RequestObservers:
        """``database``: where the request log is stored (None, or ``--no-request-log``: not stored)."""
        lines = settings.log_requests and lines_wanted()
        stored = database if settings.request_log else None
        shipper = None
        if lines or stored is not None:
            targets = ShipperTargets(lines, stored, settings.log_level, settings.log_format)
            queue = ShipperTuning(
                capacity=settings.request_log_queue,
                retention_days=settings.request_log_retention_days,
                body_retention_days=settings.request_log_body_retention_days,
            )
            shipper = RecordShipper(targets, metrics, queue)
        endpoint = otlp_endpoint(settings.otlp_endpoint)
        spans = SpanExporter(endpoint) if endpoint else None
        return cls(metrics, shipper=shipper, bodies=settings.bodies, spans=spans, stores_rows=stored is not None)

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


class Unwatched(RequestObservers):
    """Nothing observed per request: no metrics, lines, rows or spans (what the benchmarks measure the cost of
    watching against)."""

    def __call__(self, record: RequestRecord) -> None:
        pass

    def shadow(self, record: RequestRecord) -> None:
        pass

    def keep_bodies(self, route: str, request_id: str) -> bool:
        return False
