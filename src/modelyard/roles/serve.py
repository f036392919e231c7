"""``modelyard serve``, all in one process: the control plane over supervised engines, the gateway, and the admin
APIs, run until told to stop."""

from __future__ import annotations

import logging
import os
import socket

from modelyard import paths
from modelyard.api.registry_admin import RegistryAdmin
from modelyard.api.rollouts_admin import RolloutsAdmin
from modelyard.audit.log import AuditLog
from modelyard.deploy.control import EngineControl
from modelyard.deploy.deployments import DeploymentsManager
from modelyard.deploy.deployments_table import DeploymentsTable
from modelyard.deploy.reconciler import Reconciler
from modelyard.engines.llamacpp_build import EngineBuild
from modelyard.engines.supervisor import RestartPolicy
from modelyard.engines.vllm_install import installed as installed_vllm
from modelyard.observability.metrics import GatewayMetrics
from modelyard.observability.request_log_store import RequestLogStore
from modelyard.observability.routing_metrics import RoutingMetrics
from modelyard.registry.integrity import IntegrityChecker
from modelyard.registry.store import RegistryStore
from modelyard.roles.runtime import Runtime, StoredState
from modelyard.roles.server import GatewayServer, bind_listener, serve_app
from modelyard.roles.settings import ServeSettings
from modelyard.rollouts.service import RolloutService
from modelyard.security.layer import SecurityLayer
from modelyard.store.database import describe_url

log = logging.getLogger("modelyard")


def run_gateway(settings: ServeSettings, build: EngineBuild, store: RegistryStore, checker: IntegrityChecker) -> int:
    if settings.server.worker_count > 1:
        from modelyard.roles.workers import run_workers

        return run_workers(settings, build, store, checker)
    server_settings, engine = settings.server, settings.engine
    listener = bind_listener(server_settings.host, server_settings.port)
    server_box: list[GatewayServer] = []
    metrics = GatewayMetrics()
    routing = RoutingMetrics(metrics.registry)
    reconciler = Reconciler(
        store=store,
        checker=checker,
        build=build,
        engine_settings=engine,
        policy=RestartPolicy.of(engine),
        log_dir=paths.data_dir() / "logs",
        metrics=metrics,
        actor=f"gateway@{socket.gethostname()}:{server_settings.port}",
        control=settings.control,
        on_nothing_servable=lambda reason: server_box[0].fail(f"nothing can be served: {reason}"),
        vllm_settings=settings.vllm,
        vllm=installed_vllm(paths.cache_dir(), settings.vllm.vllm_device),
    )
    deployments = DeploymentsManager(
        reconciler,
        routing,
        settings.control.deployments_path,
        paths.data_dir() / "deployments.yaml",
        audit=AuditLog(store.database),
        table=DeploymentsTable(store.database),
        table_poll_s=settings.control.deployments_poll_s,
    )
    deployments.load_initial(actor=f"start-up of gateway@{socket.gethostname()}")
    security = SecurityLayer(store.database, settings.security, metrics.registry, engine.slot_context)
    registry_admin = RegistryAdmin(store, checker, reconciler, RequestLogStore(store.database), deployments)
    holder = f"{socket.gethostname()}:{os.getpid()}:{server_settings.port}"
    rollouts = RolloutService(store.database, store, reconciler, holder, metrics.registry)
    rollouts_admin = RolloutsAdmin(rollouts.store, store, rollouts.controller)
    runtime = Runtime(
        EngineControl(reconciler, deployments),
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
    server = serve_app(runtime.app, server_settings, settings.observability.log_level)
    server_box.append(server)
    log.info(
        "gateway listening on %s://%s:%d/v1 ; registry %s ; engine logs in %s",
        "https" if server_settings.tls_cert else "http",
        server_settings.host,
        server_settings.port,
        describe_url(store.database.url),
        paths.data_dir() / "logs",
    )
    server.run(sockets=[listener])
    if not server.started and server.exit_code == 0:
        return 1
    return server.exit_code
