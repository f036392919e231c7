"""What one running gateway process owns: the registry reconciler and its engines, the upstream client, the
handlers and the metrics.

Built from settings before the event loop starts; :meth:`Runtime.start` and :meth:`Runtime.stop` are called
from the ASGI lifespan so that every resource lives inside the loop that serves requests.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from modelyard.api.admin import AdminAPI
from modelyard.deploy.reconciler import Reconciler
from modelyard.gateway.catalog import ModelCatalog
from modelyard.gateway.handlers import InferenceHandlers, RequestLimits
from modelyard.gateway.proxy import Proxy
from modelyard.gateway.upstream_client import UpstreamClientSettings, create_session
from modelyard.observability.body_policy import BodyPolicy
from modelyard.observability.metrics import GatewayMetrics
from modelyard.observability.observers import RequestObservers
from modelyard.observability.request_lines import RequestLineWriter
from modelyard.observability.request_log import RequestLogSettings, RequestLogWriter
from modelyard.observability.request_log_store import RequestLogStore
from modelyard.observability.tracing import SpanExporter
from modelyard.registry.integrity import IntegrityChecker
from modelyard.registry.store import RegistryStore

log = logging.getLogger("modelyard")


@dataclass(frozen=True)
class ObservabilityOptions:
    log_requests: bool = True
    log_format: str = "text"
    request_log: RequestLogSettings | None = field(default_factory=RequestLogSettings)  # None: not stored
    bodies: BodyPolicy = field(default_factory=BodyPolicy)
    otlp_endpoint: str | None = None  # export spans over OTLP/HTTP; None: no spans, no SDK loaded


class Runtime:
    def __init__(
        self,
        store: RegistryStore,
        checker: IntegrityChecker,
        reconciler: Reconciler,
        metrics: GatewayMetrics,
        limits: RequestLimits,
        options: ObservabilityOptions | None = None,
    ) -> None:
        options = options or ObservabilityOptions()
        self.store = store
        self.metrics = metrics
        self.reconciler = reconciler
        self._proxy = Proxy(self.metrics)
        requests = RequestLogStore(store.database)
        self.request_log = (
            RequestLogWriter(requests, metrics, options.request_log) if options.request_log is not None else None
        )
        self.spans = SpanExporter(options.otlp_endpoint) if options.otlp_endpoint else None
        self.lines = RequestLineWriter(options.log_format) if options.log_requests else None
        self.observers = RequestObservers(
            metrics,
            log_requests=options.log_requests,
            sink=self.request_log,
            bodies=options.bodies,
            spans=self.spans,
            lines=self.lines,
        )
        self.handlers = InferenceHandlers(self.catalog, self._proxy, self.metrics, limits, self.observers)
        metrics.watch_engine_load(reconciler.engine_load)
        self.admin: AdminAPI | None = AdminAPI(store, checker, reconciler, requests)

    def catalog(self) -> ModelCatalog:
        return self.reconciler.catalog

    def describe(self) -> dict[str, object]:
        described = self.reconciler.describe()
        if self.request_log is not None:
            described["request_log"] = {"queued": self.request_log.depth()}
        return described

    async def engine_metrics(self) -> bytes:
        return await self.reconciler.engine_metrics()

    @property
    def ready(self) -> bool:
        return self.reconciler.ready

    async def start(self) -> None:
        self._proxy.session = create_session(UpstreamClientSettings())
        if self.request_log is not None:
            await self.request_log.start()
        if self.lines is not None:
            await self.lines.start()
        await self.reconciler.start()

    async def stop(self) -> None:
        await self.reconciler.stop()
        if self.request_log is not None:
            await self.request_log.stop()
        if self.lines is not None:
            await self.lines.stop()
        if self._proxy.session is not None:
            await self._proxy.session.close()
        if self.spans is not None:
            await asyncio.to_thread(self.spans.shutdown)  # flushes the last batch
