"""What one running gateway process owns: the registry reconciler and its engines, the upstream client, the
handlers and the metrics.

Built from settings before the event loop starts; :meth:`Runtime.start` and :meth:`Runtime.stop` are called
from the ASGI lifespan so that every resource lives inside the loop that serves requests.
"""

from __future__ import annotations

import logging

from modelyard.api.admin import AdminAPI
from modelyard.deploy.reconciler import Reconciler
from modelyard.gateway.catalog import ModelCatalog
from modelyard.gateway.handlers import InferenceHandlers, RequestLimits
from modelyard.gateway.proxy import Proxy
from modelyard.gateway.upstream_client import UpstreamClientSettings, create_session
from modelyard.observability.metrics import GatewayMetrics
from modelyard.observability.observers import RequestObservers
from modelyard.registry.integrity import IntegrityChecker
from modelyard.registry.store import RegistryStore

log = logging.getLogger("modelyard")


class Runtime:
    def __init__(
        self,
        store: RegistryStore,
        checker: IntegrityChecker,
        reconciler: Reconciler,
        metrics: GatewayMetrics,
        limits: RequestLimits,
        log_requests: bool = True,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.reconciler = reconciler
        self._proxy = Proxy(self.metrics)
        self.observers = RequestObservers(metrics, log_requests=log_requests)
        self.handlers = InferenceHandlers(self.catalog, self._proxy, self.metrics, limits, self.observers)
        metrics.watch_engine_load(reconciler.engine_load)
        self.admin: AdminAPI | None = AdminAPI(store, checker, reconciler)

    def catalog(self) -> ModelCatalog:
        return self.reconciler.catalog

    def describe(self) -> dict[str, object]:
        return self.reconciler.describe()

    @property
    def ready(self) -> bool:
        return self.reconciler.ready

    async def start(self) -> None:
        self._proxy.session = create_session(UpstreamClientSettings())
        await self.reconciler.start()

    async def stop(self) -> None:
        await self.reconciler.stop()
        if self._proxy.session is not None:
            await self._proxy.session.close()
