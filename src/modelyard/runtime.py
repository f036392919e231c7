"""What one running gateway process owns: the registry reconciler and its engines, the upstream client, the
handlers and the metrics.

Built from settings before the event loop starts; :meth:`Runtime.start` and :meth:`Runtime.stop` are called
from the ASGI lifespan so that every resource lives inside the loop that serves requests.
"""

from __future__ import annotations

import logging
import random
import socket
from pathlib import Path

from modelyard.api.admin import AdminAPI
from modelyard.deploy.deployments import DeploymentsManager
from modelyard.deploy.reconciler import Reconciler
from modelyard.gateway.breaker_probe import BreakerProber
from modelyard.gateway.catalog import ModelCatalog
from modelyard.gateway.decide import RouteDecider
from modelyard.gateway.handlers import InferenceHandlers, RequestLimits
from modelyard.gateway.proxy import Proxy
from modelyard.gateway.shadow import ShadowMirror
from modelyard.gateway.upstream_client import UpstreamClientSettings, create_session
from modelyard.observability.metrics import GatewayMetrics
from modelyard.observability.observers import ObservabilityOptions, RequestObservers
from modelyard.observability.request_log_store import RequestLogStore
from modelyard.observability.routing_metrics import RoutingMetrics
from modelyard.registry.integrity import IntegrityChecker
from modelyard.registry.store import RegistryStore
from modelyard.security.audit import AuditLog
from modelyard.security.layer import SecurityLayer

log = logging.getLogger("modelyard")


class Runtime:
    def __init__(
        self,
        store: RegistryStore,
        checker: IntegrityChecker,
        reconciler: Reconciler,
        metrics: GatewayMetrics,
        limits: RequestLimits,
        options: ObservabilityOptions | None = None,
        security: SecurityLayer | None = None,
        deployments_path: Path | None = None,
        default_deployments_path: Path | None = None,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.reconciler = reconciler
        routing = RoutingMetrics(metrics.registry)
        self._proxy = Proxy(self.metrics, routing)
        requests = RequestLogStore(store.database)
        self.observers = RequestObservers.build(metrics, options or ObservabilityOptions(), store.database.url)
        self.shadow = ShadowMirror(lambda: self._proxy.session, routing, self.observers.shadow, random.random)
        self.security = security
        self.handlers = InferenceHandlers(
            self.catalog,
            self._proxy,
            self.metrics,
            limits,
            self.observers,
            RouteDecider(routing),
            self.shadow,
            security,
        )
        metrics.watch_engine_load(reconciler.engine_load)
        routing.watch_replicas(lambda: [(r.name, r.breaker.ejected) for r in self.catalog().replicas()])
        self._prober = BreakerProber(lambda: self.catalog().replicas(), routing)
        self.deployments = DeploymentsManager(
            reconciler,
            routing,
            deployments_path,
            default_deployments_path or Path("deployments.yaml"),
            audit=AuditLog(store.database),
        )
        self.deployments.load_initial()
        self.admin: AdminAPI | None = AdminAPI(store, checker, reconciler, requests, self.deployments)

    def catalog(self) -> ModelCatalog:
        return self.reconciler.catalog

    def describe(self) -> dict[str, object]:
        described = self.reconciler.describe()
        described["deployments"] = self.deployments.status()
        if self.observers.shipper is not None:
            described["request_log"] = {"queued": self.observers.shipper.depth()}
        if self.security is not None:
            described["security"] = self.security.describe()
        return described

    async def engine_metrics(self) -> bytes:
        return await self.reconciler.engine_metrics()

    @property
    def ready(self) -> bool:
        return self.reconciler.ready

    async def start(self) -> None:
        self._proxy.session = create_session(UpstreamClientSettings())
        await self.observers.start()
        if self.security is not None:
            await self.security.start(actor=f"gateway@{socket.gethostname()}")
        await self.reconciler.start()
        await self.deployments.start()
        await self._prober.start()

    async def stop(self) -> None:
        await self.deployments.stop()
        await self._prober.stop()
        await self.shadow.stop()
        await self.reconciler.stop()
        if self.security is not None:
            await self.security.stop()
        await self.observers.stop()
        if self._proxy.session is not None:
            await self._proxy.session.close()
