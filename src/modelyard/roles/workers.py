"""``modelyard serve --workers N``: N gateway worker processes on one port, beside one control process.

Python runs one request at a time per process, so one gateway process uses at most one core. With workers:

* the **control process** (the one ``serve`` started) owns the engines (the registry reconciler launches,
  restarts and retires them), the registry poll and the deployments file; it publishes the registry revision
  and the ready engines' URLs to a file the workers follow, and serves its own metrics on a private socket;
* each **worker** is a gateway replica (``roles/gateway.py``) that listens on the same port with
  ``SO_REUSEPORT`` (the kernel spreads connections over them), routes to the published engines, and reads the
  shared deployments configuration from the database like any replica. It also listens on a private Unix socket,
  and its ``/metrics`` on the port merges every worker's and the control process's (``observability/merge.py``),
  so a scrape counts each request once whichever worker answers it;
* on SIGTERM (or Ctrl-C) every worker drains its in-flight requests (``--shutdown-grace``) and exits, then the
  control process stops the engines. A worker that dies is started again.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Awaitable, Callable, Generator
from multiprocessing.process import BaseProcess
from pathlib import Path

import aiohttp
import orjson
import uvicorn

from modelyard import paths
from modelyard.asgi import Receive, Scope, Send
from modelyard.audit.log import AuditLog
from modelyard.deploy.deployments import DeploymentsManager
from modelyard.deploy.deployments_table import DeploymentsTable
from modelyard.deploy.fleet import publish_engines
from modelyard.deploy.reconciler import Reconciler
from modelyard.deploy.routes import version_key
from modelyard.deploy.settings import FleetSettings
from modelyard.engines.llamacpp_build import EngineBuild
from modelyard.engines.process import kill_with_parent
from modelyard.engines.supervisor import RestartPolicy
from modelyard.engines.vllm_install import installed as installed_vllm
from modelyard.observability.metrics import GatewayMetrics
from modelyard.observability.routing_metrics import RoutingMetrics
from modelyard.registry.integrity import IntegrityChecker
from modelyard.registry.store import RegistryStore
from modelyard.roles.server import bind_listener
from modelyard.roles.settings import GatewayRoleSettings, ServeSettings
from modelyard.rollouts.service import RolloutService

log = logging.getLogger("modelyard")

ENGINES_FILE = "engines.json"
CONTROL_SOCKET = "control.sock"
PUBLISH_EVERY_S = 0.2
RESTART_EVERY_S = 5.0


def worker_settings(settings: ServeSettings) -> GatewayRoleSettings:
    """A worker's settings: ``serve``'s, minus the deployments file (the control process applies it) and with the
    registry re-read when the control process publishes a new revision (a slow poll is the safety net)."""
    return GatewayRoleSettings(
        server=settings.server,
        control=dataclasses.replace(settings.control, deployments_path=None, registry_poll_s=30.0),
        fleet=FleetSettings(discovery_s=0.25, engine_slots=settings.engine.parallel),
        gateway=settings.gateway,
        observability=settings.observability,
        security=settings.security,
        responses=settings.responses,
        batches=settings.batches,
        rollouts=settings.rollouts,
        console=settings.console,
    )


def run_workers(settings: ServeSettings, build: EngineBuild, store: RegistryStore, checker: IntegrityChecker) -> int:
    server = settings.server
    reserved = bind_listener(server.host, server.port, reuse_port=True, listen=False)  # a taken port fails now
    run_dir = Path(tempfile.mkdtemp(prefix=f"modelyard-{server.port}-"))  # short: Unix socket paths are limited
    metrics = GatewayMetrics()
    routing = RoutingMetrics(metrics.registry)
    failure: list[str] = []
    reconciler = Reconciler(
        store=store,
        checker=checker,
        build=build,
        engine_settings=settings.engine,
        policy=RestartPolicy.of(settings.engine),
        log_dir=paths.data_dir() / "logs",
        metrics=metrics,
        actor=f"gateway@{socket.gethostname()}:{server.port}",
        control=settings.control,
        on_nothing_servable=failure.append,
        min_drain_s=server.shutdown_grace_s,
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
    try:
        # The control process follows the rollouts' splits too, so that a candidate's engines start (and are
        # published to the workers) before its share reaches them; the controller itself runs on whichever
        # process of any replica holds the ``rollouts`` lease.
        holder = f"{socket.gethostname()}:{os.getpid()}:{server.port}:control"
        rollouts = RolloutService(store.database, store, reconciler, holder, metrics.registry)
        control = Control(settings, reconciler, deployments, metrics, run_dir, failure, rollouts)
        return asyncio.run(control.run())
    finally:
        reserved.close()
        shutil.rmtree(run_dir, ignore_errors=True)


class Control:
    """The control process's loop: engines, the published file, the metrics socket, and the workers."""

    def __init__(
        self,
        settings: ServeSettings,
        reconciler: Reconciler,
        deployments: DeploymentsManager,
        metrics: GatewayMetrics,
        run_dir: Path,
        failure: list[str],
        rollouts: RolloutService,
    ) -> None:
        self.rollouts = rollouts
        self.settings = settings
        self.reconciler = reconciler
        self.deployments = deployments
        self.metrics = metrics
        self.run_dir = run_dir
        self.failure = failure
        self.count = settings.server.worker_count
        self.stopping = asyncio.Event()
        self._published: bytes | None = None

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop_requested, sig)
        await self.reconciler.start()
        await self.deployments.start()
        await self.rollouts.start()
        await self._publish()
        metrics_server = _UnixServer(self._metrics_app, self.run_dir / CONTROL_SOCKET)
        serving = asyncio.create_task(metrics_server.serve(), name="control-metrics")
        publishing = asyncio.create_task(self._keep_publishing(), name="publish-engines")
        pool = WorkerPool(
            worker_settings(self.settings), self.run_dir, self.count, self.settings.engine.slot_context, published=True
        )
        pool.start()
        log.info(
            "serving on http://%s:%d/v1 with %d workers (control process %d)",
            self.settings.server.host,
            self.settings.server.port,
            self.count,
            os.getpid(),
        )
        while not self.stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), 0.5)
            if self.failure:
                log.error("stopping: nothing can be served: %s", self.failure[0])
                self.stopping.set()
            if not self.stopping.is_set():
                pool.restart_dead()
        await pool.stop(self.settings.server.shutdown_grace_s + 10)
        publishing.cancel()
        metrics_server.should_exit = True
        await serving
        await self.rollouts.stop()
        await self.deployments.stop()
        await self.reconciler.stop()
        return 1 if self.failure else 0

    def _stop_requested(self, sig: int) -> None:
        if not self.stopping.is_set():
            log.info("received %s: every worker drains its requests, then the engines stop", signal.Signals(sig).name)
        self.stopping.set()

    def _engines(self) -> dict[str, list[str]]:
        ready: dict[str, list[str]] = {}
        for name, engine in self.reconciler.engines.items():
            if engine.ready:
                ready.setdefault(version_key(name), []).append(engine.base_url)
        return {key: sorted(urls) for key, urls in ready.items()}

    async def _publish(self) -> None:
        engines, revision = self._engines(), self.reconciler.revision
        snapshot = orjson.dumps([revision, engines], option=orjson.OPT_SORT_KEYS)
        if snapshot != self._published:
            await asyncio.to_thread(publish_engines, self.run_dir / ENGINES_FILE, revision, engines)
            self._published = snapshot

    async def _keep_publishing(self) -> None:
        while True:
            await asyncio.sleep(PUBLISH_EVERY_S)
            await self._publish()

    async def _metrics_app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            message = await receive()
            await send({"type": f"{message['type']}.complete"})
            if message["type"] == "lifespan.startup":
                message = await receive()
                await send({"type": f"{message['type']}.complete"})
            return
        body = self.metrics.render() + await self.reconciler.engine_metrics()
        headers = [(b"content-type", self.metrics.content_type.encode()), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class WorkerPool:
    """N worker processes (spawned: a clean interpreter, no inherited loop, pools or threads), started again when
    one dies, stopped together: SIGTERM to each (it drains), then a kill for one that outlives the grace."""

    def __init__(
        self, settings: GatewayRoleSettings, run_dir: Path, count: int, context: int | None, published: bool
    ) -> None:
        self.settings = settings
        self.run_dir = run_dir
        self.count = count
        self.context = context
        self.published = published
        self.workers: list[BaseProcess | None] = [None] * count
        self._spawn = multiprocessing.get_context("spawn")
        self._started = [0.0] * count

    def start(self) -> None:
        for index in range(self.count):
            self._start(index)

    def restart_dead(self) -> None:
        """Start again every worker that died, at most once per :data:`RESTART_EVERY_S` each (a worker that
        cannot start at all is not restarted in a tight loop)."""
        now = time.monotonic()
        for index, worker in enumerate(self.workers):
            if worker is not None and not worker.is_alive() and now - self._started[index] >= RESTART_EVERY_S:
                log.error("worker %d exited (code %s); starting it again", index, worker.exitcode)
                self._start(index)

    def _start(self, index: int) -> None:
        peers = [str(self.run_dir / f"worker-{i}.sock") for i in range(self.count) if i != index]
        if self.published:
            peers.append(str(self.run_dir / CONTROL_SOCKET))
        process = self._spawn.Process(
            target=run_worker,
            args=(self.settings, index, str(self.run_dir), peers, self.context, self.published),
            name=f"modelyard-worker-{index}",
        )
        process.start()
        self.workers[index] = process
        self._started[index] = time.monotonic()

    async def stop(self, grace_s: float) -> None:
        alive = [w for w in self.workers if w is not None and w.is_alive()]
        for worker in alive:
            if worker.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid, signal.SIGTERM)
        for worker in alive:
            await asyncio.to_thread(worker.join, grace_s)
            if worker.is_alive():
                log.warning("worker %s did not stop in %.0f s; killing it", worker.name, grace_s)
                worker.kill()
                await asyncio.to_thread(worker.join, 5)


def run_gateway_workers(settings: GatewayRoleSettings) -> int:
    """``modelyard gateway --workers N``: N replicas of a stateless gateway on one port (nothing to own: each is a
    whole replica), their metrics merged like ``serve``'s workers'."""
    server = settings.server
    reserved = bind_listener(server.host, server.port, reuse_port=True, listen=False)
    run_dir = Path(tempfile.mkdtemp(prefix=f"modelyard-{server.port}-"))

    async def supervise() -> int:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        pool = WorkerPool(settings, run_dir, server.worker_count, None, published=False)
        pool.start()
        log.info("gateway on http://%s:%d/v1 with %d workers", server.host, server.port, server.worker_count)
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), 0.5)
            if not stopping.is_set():
                pool.restart_dead()
        await pool.stop(server.shutdown_grace_s + 10)
        return 0

    try:
        return asyncio.run(supervise())
    finally:
        reserved.close()
        shutil.rmtree(run_dir, ignore_errors=True)


class _UnixServer(uvicorn.Server):
    """uvicorn on a Unix socket, without its own signal handling (the control process owns the signals)."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], path: Path) -> None:
        config = uvicorn.Config(app, uds=str(path), interface="asgi3", lifespan="on", access_log=False, log_config=None)
        super().__init__(config)

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def run_worker(
    settings: GatewayRoleSettings, index: int, run_dir: str, peers: list[str], context: int | None, published: bool
) -> None:
    """A worker process's whole life (the target of the spawned process)."""
    from modelyard.observability.logs import configure_logging
    from modelyard.roles.gateway import build_gateway_runtime
    from modelyard.roles.server import serve_app
    from modelyard.roles.stores import open_registry

    os.setsid()  # a Ctrl-C reaches the control process alone, which then stops the workers in order
    kill_with_parent()  # a control process that dies takes its workers with it
    configure_logging(settings.observability.log_level, settings.observability.log_format)
    server = settings.server
    listener = bind_listener(server.host, server.port, reuse_port=True)
    private = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    path = Path(run_dir) / f"worker-{index}.sock"
    path.unlink(missing_ok=True)
    private.bind(str(path))
    private.listen(128)
    store, checker = open_registry()
    engines = Path(run_dir) / ENGINES_FILE if published else None
    runtime = build_gateway_runtime(settings, store, checker, published=engines, context_length=context)
    runtime.metrics_peers = lambda: scrape_peers(peers)
    app_server = serve_app(runtime.app, server, settings.observability.log_level)
    app_server.run(sockets=[listener, private])
    raise SystemExit(app_server.exit_code if app_server.started else 1)


async def scrape_peers(sockets: list[str]) -> list[bytes]:
    """Every sibling's own metrics, over its private socket (a sibling that does not answer in time is left out;
    it is restarting, and its counts start again from zero like any restarted process's)."""

    async def one(path: str) -> bytes:
        try:
            connector = aiohttp.UnixConnector(path=path)
            async with (
                aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=2)) as session,
                session.get("http://worker/metrics") as response,
            ):
                return await response.read() if response.status == 200 else b""
        except (aiohttp.ClientError, TimeoutError, OSError):
            return b""

    return list(await asyncio.gather(*(one(path) for path in sockets)))
