"""``modelyard serve``: prepare the engine and model, then run the gateway until told to stop.

Shutdown order on SIGTERM / Ctrl-C: stop accepting connections and report not-ready, let in-flight requests
(streams included) finish within the grace period, then stop the engines. A second Ctrl-C skips the wait.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import threading
from collections.abc import Callable, Generator

import uvicorn

from modelyard import paths
from modelyard.api.app import ModelyardApp
from modelyard.deploy.engine_settings import EngineSettings
from modelyard.deploy.reconciler import Reconciler
from modelyard.engines.llamacpp_build import EngineBuild
from modelyard.engines.supervisor import RestartPolicy
from modelyard.gateway.handlers import RequestLimits
from modelyard.observability.body_policy import BodyPolicy
from modelyard.observability.metrics import GatewayMetrics
from modelyard.observability.observers import ObservabilityOptions
from modelyard.observability.record_shipper import RequestLogSettings
from modelyard.observability.tracing import otlp_endpoint
from modelyard.registry.integrity import IntegrityChecker
from modelyard.registry.store import RegistryStore
from modelyard.runtime import Runtime
from modelyard.security.layer import SecurityLayer, SecuritySettings
from modelyard.settings import ServeSettings
from modelyard.store.database import describe_url

log = logging.getLogger("modelyard")


class GatewayServer(uvicorn.Server):
    """uvicorn's server, minus re-raising the caught signal after a graceful stop (we exit 0 instead)."""

    def __init__(self, config: uvicorn.Config, on_exit_requested: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_exit_requested = on_exit_requested
        self.exit_code = 0

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)

    def handle_exit(self, sig: int, frame: object) -> None:
        if not self.should_exit:
            log.info(
                "received %s: draining in-flight requests (up to %.0f s), then stopping",
                signal.Signals(sig).name,
                self.config.timeout_graceful_shutdown or 0,
            )
            self._on_exit_requested()
        super().handle_exit(sig, frame)  # type: ignore[arg-type]

    def fail(self, reason: str) -> None:
        log.error("stopping: %s", reason)
        self.exit_code = 1
        self.should_exit = True


class PortInUseError(OSError):
    pass


def bind_listener(host: str, port: int, backlog: int = 4096) -> socket.socket:
    """Bind before starting anything else, so a taken port is a clear error and not a half-started server."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise PortInUseError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(backlog)
    return sock  # not inheritable: engines launched later must not hold the gateway's port open


def gateway_config(app: ModelyardApp, settings: ServeSettings) -> uvicorn.Config:
    """uvicorn settings of every modelyard gateway (also used by the benchmarks, so they measure the real thing).

    uvloop and httptools are the fastest loop and parser uvicorn has; the access log is off because a log line per
    request costs more than the proxying (the request log, when it comes, leaves the hot path through a queue).
    """
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_config=None,
        log_level=settings.log_level,
        timeout_graceful_shutdown=int(settings.shutdown_grace_s),
        timeout_keep_alive=30,
        backlog=4096,
    )


def run_gateway(settings: ServeSettings, build: EngineBuild, store: RegistryStore, checker: IntegrityChecker) -> int:
    listener = bind_listener(settings.host, settings.port)
    policy = RestartPolicy(
        initial_backoff_s=settings.engine_restart_backoff_s, ready_timeout_s=settings.engine_ready_timeout_s
    )
    server_box: list[GatewayServer] = []
    metrics = GatewayMetrics()
    reconciler = Reconciler(
        store=store,
        checker=checker,
        build=build,
        engine_settings=EngineSettings(
            context_size=settings.context_size,
            parallel=settings.parallel,
            threads=settings.threads,
            embeddings=settings.embeddings,
        ),
        policy=policy,
        log_dir=paths.data_dir() / "logs",
        metrics=metrics,
        actor=f"gateway@{socket.gethostname()}:{settings.port}",
        poll_interval_s=settings.registry_poll_s,
        drain_timeout_s=settings.drain_timeout_s,
        on_nothing_servable=lambda reason: server_box[0].fail(f"nothing can be served: {reason}"),
    )
    limits = RequestLimits(max_body_bytes=settings.max_body_bytes)
    observability = ObservabilityOptions(
        log_requests=settings.log_requests,
        log_format=settings.log_format,
        log_level=settings.log_level,
        request_log=RequestLogSettings(
            capacity=settings.request_log_queue,
            retention_days=settings.request_log_retention_days,
            body_retention_days=settings.request_log_body_retention_days,
        )
        if settings.request_log
        else None,
        bodies=BodyPolicy.parse(settings.request_log_bodies),
        otlp_endpoint=otlp_endpoint(settings.otlp_endpoint),
    )
    security = SecurityLayer(
        store.database,
        SecuritySettings(
            auth=settings.auth,
            region=settings.region,
            metrics_public=not settings.metrics_auth,
            redis_url=settings.redis_url,
            redis_prefix=settings.redis_prefix,
            fail_mode=settings.ratelimit_fail_mode,
            guardrails_file=settings.guardrails_file,
            key_poll_s=settings.key_poll_s,
            context_length=settings.context_size // settings.parallel,
        ),
        metrics.registry,
    )
    runtime = Runtime(
        store,
        checker,
        reconciler,
        metrics,
        limits,
        observability,
        security=security,
        deployments_path=settings.deployments_path,
        default_deployments_path=paths.data_dir() / "deployments.yaml",
    )
    app = ModelyardApp(runtime)
    config = gateway_config(app, settings)
    server = GatewayServer(config, on_exit_requested=app.begin_drain)
    server_box.append(server)
    log.info(
        "gateway listening on http://%s:%d/v1 ; registry %s ; engine logs in %s",
        settings.host,
        settings.port,
        describe_url(store.database.url),
        paths.data_dir() / "logs",
    )
    server.run(sockets=[listener])
    if not server.started and server.exit_code == 0:
        return 1
    return server.exit_code
