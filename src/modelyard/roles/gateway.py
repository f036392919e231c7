"""``modelyard gateway``: a stateless gateway replica. It launches no engine; it serves the registry's versions from
the engines it finds (``--engine-url``: static URLs or DNS names, re-resolved), routes as the shared deployments
configuration says, and keeps all its state in the shared PostgreSQL (registry, keys, deployments, request log,
stored responses and batches) and Redis (limits, budgets). Run any number of them behind one Service.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

from modelyard import paths
from modelyard.api.registry_admin import RegistryAdmin
from modelyard.api.rollouts_admin import RolloutsAdmin
from modelyard.audit.log import AuditLog
from modelyard.deploy.deployments import DeploymentsManager
from modelyard.deploy.deployments_table import DeploymentsTable
from modelyard.deploy.discovery import parse_engine_urls
from modelyard.deploy.fleet import FleetControl
from modelyard.observability.metrics import GatewayMetrics
from modelyard.observability.request_log_store import RequestLogStore
from modelyard.observability.routing_metrics import RoutingMetrics
from modelyard.registry.integrity import IntegrityChecker
from modelyard.registry.store import RegistryStore
from modelyard.roles.runtime import Runtime, StoredState
from modelyard.roles.server import GatewayServer, bind_listener, serve_app
from modelyard.roles.settings import GatewayRoleSettings
from modelyard.rollouts.service import RolloutService
from modelyard.routing.catalog import ModelCatalog
from modelyard.security.layer import SecurityLayer
from modelyard.store.database import describe_url

log = logging.getLogger("modelyard")


class FleetDeployments:
    """The deployments control plane of a gateway replica: the fleet of remote engines, routed as the shared
    deployments configuration says (the same pair ``modelyard serve`` runs over its supervised engines)."""

    def __init__(self, fleet: FleetControl, deployments: DeploymentsManager) -> None:
        self.fleet = fleet
        self.deployments = deployments

    @property
    def catalog(self) -> ModelCatalog:
        return self.fleet.catalog

    @property
    def ready(self) -> bool:
        return self.fleet.ready

    def describe(self) -> dict[str, object]:
        described = self.fleet.describe()
        described["deployments"] = self.deployments.status()
        return described

    async def engine_metrics(self) -> bytes:
        return await self.fleet.engine_metrics()

    async def start(self) -> None:
        await self.fleet.start()
        await self.deployments.start()

    async def stop(self) -> None:
        await self.deployments.stop()
        await self.fleet.stop()


def build_gateway_runtime(
    settings: GatewayRoleSettings,
    store: RegistryStore,
    checker: IntegrityChecker,
    published: Path | None = None,
    context_length: int | None = None,
) -> Runtime:
    """Everything one gateway replica (or one worker of ``serve --workers``) runs, over the shared stores.
    ``published``: the engines file of the control process (a worker's); ``context_length``: tokens one request
    may use, when the engines' settings are known."""
    metrics = GatewayMetrics()
    routing = RoutingMetrics(metrics.registry)
    control = settings.control
    fleet = FleetControl(
        store,
        parse_engine_urls(settings.fleet.engine_urls),
        metrics,
        registry_poll_s=control.registry_poll_s,
        discovery_s=settings.fleet.discovery_s,
        parallel=settings.fleet.engine_slots,
        published=published,
    )
    deployments = DeploymentsManager(
        fleet,
        routing,
        control.deployments_path,
        paths.data_dir() / "deployments.yaml",
        audit=AuditLog(store.database),
        table=DeploymentsTable(store.database),
        table_poll_s=control.deployments_poll_s,
    )
    deployments.load_initial(actor=f"start-up of gateway@{socket.gethostname()}")
    security = SecurityLayer(store.database, settings.security, metrics.registry, context_length)
    registry_admin = RegistryAdmin(store, checker, fleet, RequestLogStore(store.database), deployments)
    holder = f"{socket.gethostname()}:{os.getpid()}:{settings.server.port}"
    rollouts = RolloutService(store.database, store, fleet, holder, metrics.registry)
    rollouts_admin = RolloutsAdmin(rollouts.store, store, rollouts.controller)
    return Runtime(
        FleetDeployments(fleet, deployments),
        metrics,
        routing,
        settings.gateway,
        settings.observability,
        request_log=store.database.url,
        security=security,
        admin=[registry_admin, rollouts_admin],
        state=StoredState(store.database, settings.responses, settings.batches, settings.rollouts),
        rollouts=rollouts,
        console=settings.console,
    )


def run_gateway_role(settings: GatewayRoleSettings, store: RegistryStore, checker: IntegrityChecker) -> int:
    if settings.server.worker_count > 1:
        from modelyard.roles.workers import run_gateway_workers

        return run_gateway_workers(settings)
    server_settings = settings.server
    listener = bind_listener(server_settings.host, server_settings.port)
    runtime = build_gateway_runtime(settings, store, checker)
    server: GatewayServer = serve_app(runtime.app, server_settings, settings.observability.log_level)
    log.info(
        "gateway replica listening on http://%s:%d/v1 ; registry %s ; engines %s",
        server_settings.host,
        server_settings.port,
        describe_url(store.database.url),
        ", ".join(settings.fleet.engine_urls) or "none configured (remote targets only)",
    )
    server.run(sockets=[listener])
    if not server.started and server.exit_code == 0:
        return 1
    return server.exit_code
