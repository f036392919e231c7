"""The control plane a gateway process serves from: the catalog of routes it routes over, whether it is ready,
and the engines' own metrics.

Two kinds exist. :class:`EngineControl` is ``modelyard serve``'s: the registry reconciler launching and retiring
supervised engines, plus the deployments file. ``deploy/static.py`` is a fixed list of upstream URLs (remote
OpenAI-compatible endpoints, or the benchmarks' mock engine). The runtime treats both the same.
"""

from __future__ import annotations

from typing import Protocol

from modelyard.deploy.deployments import DeploymentsManager
from modelyard.deploy.reconciler import Reconciler
from modelyard.routing.catalog import ModelCatalog


class ControlPlane(Protocol):
    @property
    def catalog(self) -> ModelCatalog: ...

    @property
    def ready(self) -> bool: ...

    def describe(self) -> dict[str, object]: ...

    async def engine_metrics(self) -> bytes: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class EngineControl:
    """Engines supervised from the registry, routed as the deployments file says."""

    def __init__(self, reconciler: Reconciler, deployments: DeploymentsManager) -> None:
        self.reconciler = reconciler
        self.deployments = deployments

    @property
    def catalog(self) -> ModelCatalog:
        return self.reconciler.catalog

    @property
    def ready(self) -> bool:
        return self.reconciler.ready

    def describe(self) -> dict[str, object]:
        described = self.reconciler.describe()
        described["deployments"] = self.deployments.status()
        return described

    async def engine_metrics(self) -> bytes:
        return await self.reconciler.engine_metrics()

    async def start(self) -> None:
        await self.reconciler.start()
        await self.deployments.start()

    async def stop(self) -> None:
        await self.deployments.stop()
        await self.reconciler.stop()
