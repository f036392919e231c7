"""What one running gateway process owns, assembled in one place: the control plane it serves from, the
pipeline's stages, the observers, the security layer, the upstream client, and the ASGI app over all of them.

Built before the event loop starts; :meth:`Runtime.start` and :meth:`Runtime.stop` are called from the ASGI
lifespan so that every resource lives inside the loop that serves requests. ``modelyard serve`` builds it over
supervised engines (``roles/serve.py``); the benchmarks over a fixed list of upstream URLs (``deploy/static.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import random
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import URL

from modelyard.api.app import ModelyardApp
from modelyard.api.console.charts import ChartSource, MemoryCharts, PrometheusCharts
from modelyard.api.console.context import AdminCall
from modelyard.api.console.service import Console
from modelyard.api.console.settings import ConsoleSettings
from modelyard.api.feedback_api import FeedbackAPI
from modelyard.api.security_admin import SecurityAdmin
from modelyard.batches.settings import BatchSettings
from modelyard.batches.store import BatchStore
from modelyard.deploy.control import ControlPlane
from modelyard.gateway.admit import Admit
from modelyard.gateway.batch_runner import BatchRunner
from modelyard.gateway.batches_api import BatchesAPI
from modelyard.gateway.breaker_probe import BreakerProber
from modelyard.gateway.decide import Decider
from modelyard.gateway.forward import Forwarder
from modelyard.gateway.hold import Hold
from modelyard.gateway.inference import InferenceAPI
from modelyard.gateway.pipeline import Pipeline
from modelyard.gateway.responses import ResponsesAPI
from modelyard.gateway.settings import GatewaySettings
from modelyard.gateway.shadow import ShadowMirror
from modelyard.gateway.slots import SlotGates
from modelyard.gateway.upstream_call import UpstreamCaller
from modelyard.gateway.upstream_client import UpstreamClientSettings, create_session
from modelyard.observability.history import MetricsHistory
from modelyard.observability.merge import merge_expositions
from modelyard.observability.metrics import GatewayMetrics
from modelyard.observability.observers import RequestObservers, Unwatched
from modelyard.observability.routing_metrics import RoutingMetrics
from modelyard.observability.settings import ObservabilitySettings
from modelyard.responses.settings import ResponsesSettings
from modelyard.responses.store import ResponseStore
from modelyard.rollouts.feedback import FeedbackStore
from modelyard.rollouts.service import RolloutService
from modelyard.rollouts.settings import RolloutSettings
from modelyard.routing.catalog import ModelCatalog
from modelyard.security.layer import SecurityLayer
from modelyard.store.database import Database
from modelyard.store.leases import LeaseKeeper


@dataclass(frozen=True)
class StoredState:
    """Where the Responses and Batch APIs keep their state (the shared database), and their settings."""

    database: Database
    responses: ResponsesSettings = field(default_factory=ResponsesSettings)
    batches: BatchSettings = field(default_factory=BatchSettings)
    rollouts: RolloutSettings = field(default_factory=RolloutSettings)


class Runtime:
    def __init__(
        self,
        control: ControlPlane,
        metrics: GatewayMetrics,
        routing: RoutingMetrics,
        gateway: GatewaySettings,
        observability: ObservabilitySettings,
        request_log: URL | None,
        security: SecurityLayer | None = None,
        admin: list[object] | None = None,
        watched: bool = True,
        state: StoredState | None = None,
        rollouts: RolloutService | None = None,
        console: ConsoleSettings | None = None,
    ) -> None:
        """``request_log``: the database the request log is stored in (None: not stored). ``admin``: the admin
        services this process runs (the registry's, when it has one). ``watched=False``: nothing is observed per
        request (the benchmarks' "all off"). ``state``: where stored responses, files and batches live (None: the
        Responses API answers without storing, the Batch API is not available). ``rollouts``: the rollout
        splits and controller (``modelyard serve``). ``console``: the web console's settings (None, or
        ``--console off``: no console)."""
        self.rollouts = rollouts
        self.control = control
        self.metrics = metrics
        self.security = security
        self.observers = RequestObservers.build(metrics, observability, request_log)
        observe = self.observers if watched else Unwatched(metrics)
        self.upstreams = UpstreamCaller(metrics, routing)
        self.shadow = ShadowMirror(self.upstreams, routing, observe.shadow, random.random)
        self.pipeline = Pipeline(
            serving=control,
            settings=gateway,
            decide=Decider(routing),
            admit=Admit(security) if security is not None else None,
            forward=Forwarder(
                self.upstreams,
                routing,
                lambda kind: metrics.invalid_output.labels(kind).inc(),
                Hold(routing),
                SlotGates(gateway.queue_max),
            ),
            shadow=self.shadow,
            observe=observe,
            metrics=metrics,
        )
        self._loop: asyncio.AbstractEventLoop | None = None  # the serving loop, once started
        metrics.gauge_callback(
            "modelyard_asyncio_tasks",
            "Tasks alive in the serving event loop (a number that keeps growing is a leak; bench/soak.py checks it).",
            lambda: len(asyncio.all_tasks(self._loop)) if self._loop is not None else 0,
        )
        routing.watch_replicas(lambda: [(r.name, r.breaker.ejected) for r in self.catalog().replicas()])
        self._prober = BreakerProber(lambda: self.catalog().replicas(), routing)
        responses = ResponseStore(state.database, state.responses.response_retention_s) if state else None
        self.responses = ResponsesAPI(self.pipeline, responses, gateway.max_body_bytes)
        # Feedback rates rows of the request log, so it lives where the request log does (the shared database).
        shared = state is not None and request_log is not None and _same(state.database.url, request_log)
        feedback = FeedbackStore(state.database) if state is not None and shared else None
        services: list[object] = [
            InferenceAPI(self.pipeline, self.catalog),
            self.responses,
            FeedbackAPI(feedback, state.rollouts.feedback_scale if state else RolloutSettings().feedback_scale),
            *(admin or []),
        ]
        if security is not None:
            services.append(SecurityAdmin(security))
        self._batches: LeaseKeeper | None = None
        self._batch_task: asyncio.Task[None] | None = None
        if state is not None:
            settings = state.batches
            batches = BatchStore(state.database, settings.batch_retention_s, settings.batch_max_lines)
            services.append(BatchesAPI(batches, settings.batch_max_file_bytes))
            self._batch_runner = BatchRunner(
                self.pipeline,
                batches,
                grant_of=lambda key_id: security.poller.snapshot.by_id(key_id) if security is not None else None,
                in_flight=lambda: metrics.in_flight,
                concurrency=settings.batch_concurrency,
                live_limit=settings.batch_live_limit,
                authenticating=security is not None and security.settings.auth,
            )
            holder = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
            self._batches = LeaseKeeper(state.database, "batches", holder)
        self.metrics_peers: Callable[[], Awaitable[list[bytes]]] | None = None
        self.history: MetricsHistory | None = None
        build_console = None
        if console is not None and console.console:
            charts: ChartSource
            if console.prometheus_url:
                charts = PrometheusCharts(console.prometheus_url)
            else:
                self.history = MetricsHistory(metrics.registry)
                charts = MemoryCharts(self.history)

            def build_console(call: AdminCall) -> Console:
                return Console(console, security, call, charts)

        self.app = ModelyardApp(self, services, security, build_console)

    def catalog(self) -> ModelCatalog:
        return self.control.catalog

    @property
    def ready(self) -> bool:
        return self.control.ready

    def describe(self) -> dict[str, object]:
        described: dict[str, Any] = self.control.describe()
        if self.observers.shipper is not None:
            described["request_log"] = {"queued": self.observers.shipper.depth()}
        if self.security is not None:
            described["security"] = self.security.describe()
        return described

    async def metrics_text(self, local: bool = False) -> tuple[bytes, str]:
        """This process's metrics and its engines'; with :attr:`metrics_peers` (a worker of ``serve --workers``)
        and unless ``local``, merged with every other process's, so any worker's answer counts them all once."""
        own = self.metrics.render() + await self.control.engine_metrics()
        if local or self.metrics_peers is None:
            return own, self.metrics.content_type
        return merge_expositions([own, *await self.metrics_peers()]), self.metrics.content_type

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.upstreams.session = create_session(UpstreamClientSettings())
        await self.observers.start()
        if self.security is not None:
            await self.security.start(actor=f"gateway@{socket.gethostname()}")
        await self.control.start()
        if self.rollouts is not None:
            await self.rollouts.start()
        await self._prober.start()
        if self.history is not None:
            await self.history.start()
        if self._batches is not None:
            self._batch_task = asyncio.create_task(self._batches.run(self._batch_runner.run), name="batches")
        # Everything built so far lives as long as the process: keep it out of every garbage collection, so a
        # collection only walks what requests allocate (CPython's documented gc.freeze use after start-up).
        gc.freeze()

    async def stop(self) -> None:
        if self._batch_task is not None:
            self._batch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._batch_task
        if self.history is not None:
            await self.history.stop()
        await self._prober.stop()
        if self.rollouts is not None:
            await self.rollouts.stop()
        await self.shadow.stop()
        await self.control.stop()
        if self.security is not None:
            await self.security.stop()
        await self.observers.stop()
        if self.upstreams.session is not None:
            await self.upstreams.session.close()


def _same(a: URL, b: URL) -> bool:
    return a.render_as_string(hide_password=False) == b.render_as_string(hide_password=False)
