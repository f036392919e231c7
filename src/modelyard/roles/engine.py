"""``modelyard engine --model NAME[:VERSION|@ALIAS]``: one supervised engine, what an engine Pod runs.

The reference is resolved once against the registry; the artifact's sha256 is checked against the registered one
before every launch (a mismatch is recorded and the process exits non-zero); then ``llama-server`` serves the
OpenAI API on ``--port`` directly (no proxy hop) and is restarted with back-off when it dies or hangs. Beside it,
on ``--ops-port``: ``/health`` (the supervisor is alive and has not given up: the liveness probe), ``/ready``
(the engine answers: the readiness probe; 503 while loading, restarting or draining) and ``/metrics`` (the
engine's own metrics, named and labelled as the gateway exports them, plus its state and restarts).

SIGTERM: ``/ready`` turns 503 at once, the gateways' health checks stop sending new requests, and after
``--shutdown-grace`` seconds the engine is stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
import socket
from collections.abc import Generator
from functools import partial

import orjson
import uvicorn

from modelyard import paths
from modelyard.asgi import Receive, Scope, Send
from modelyard.deploy.engine_config import engine_log_path, llama_server_config
from modelyard.deploy.reconciler import verify_artifact
from modelyard.deploy.routes import resolve_version
from modelyard.engines.llamacpp_build import EngineBuild
from modelyard.engines.supervisor import EngineState, EngineSupervisor, RestartPolicy
from modelyard.observability.engine_metrics import relabel
from modelyard.registry.errors import RegistryError
from modelyard.registry.integrity import IntegrityChecker
from modelyard.registry.records import VersionRecord
from modelyard.registry.store import RegistryStore
from modelyard.roles.settings import EngineRoleSettings

log = logging.getLogger("modelyard")


def resolve_engine_version(store: RegistryStore, reference: str) -> VersionRecord:
    found = resolve_version(store.snapshot(), reference)
    if isinstance(found, str):
        raise RegistryError(f"--model {reference}: {found}", "model")
    return found


class EngineOps:
    """The ASGI app of the ops port: health, readiness and metrics of the one supervised engine."""

    def __init__(self, engine: EngineSupervisor, version: VersionRecord) -> None:
        self.engine = engine
        self.version = version
        self.draining = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        path = scope["path"]
        engine = self.engine
        if path == "/health":
            alive = engine.state != EngineState.FAILED
            await _reply(send, 200 if alive else 503, {"status": "alive" if alive else "failed", **engine.describe()})
        elif path == "/ready":
            ready = engine.ready and not self.draining
            state = "draining" if self.draining else engine.state.value
            await _reply(send, 200 if ready else 503, {"ready": ready, "state": state, "model": self.version.key})
        elif path == "/metrics":
            await _reply(send, 200, await self.metrics(), "text/plain; version=0.0.4; charset=utf-8")
        else:
            await _reply(
                send,
                404,
                {
                    "error": {
                        "message": f"unknown path {path} (the ops port serves /health, /ready, /metrics)",
                        "type": "not_found",
                    }
                },
            )

    async def metrics(self) -> bytes:
        labels = {"engine": self.engine.name, "model": self.version.model, "version": str(self.version.number)}
        text = await self.engine.scrape_metrics()
        selector = ",".join(f'{k}="{v}"' for k, v in labels.items())
        own = (
            "# HELP modelyard_engine_ready Whether the engine answers (1) or is loading, restarting, draining (0).\n"
            "# TYPE modelyard_engine_ready gauge\n"
            f"modelyard_engine_ready{{{selector}}} {int(self.engine.ready and not self.draining)}\n"
            "# HELP modelyard_engine_restarts_total Engine restarts since the process started.\n"
            "# TYPE modelyard_engine_restarts_total counter\n"
            f"modelyard_engine_restarts_total{{{selector}}} {self.engine.restarts}\n"
        ).encode()
        return own + (relabel([(labels, text)]) if text else b"")


class OpsServer(uvicorn.Server):
    """uvicorn without its own signal handling: the engine role decides what SIGTERM does."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def run_engine_role(
    settings: EngineRoleSettings, build: EngineBuild, store: RegistryStore, checker: IntegrityChecker
) -> int:
    version = resolve_engine_version(store, settings.role.model_ref)
    return asyncio.run(_serve(settings, build, store, checker, version))


async def _serve(
    settings: EngineRoleSettings,
    build: EngineBuild,
    store: RegistryStore,
    checker: IntegrityChecker,
    version: VersionRecord,
) -> int:
    role = settings.role
    config = llama_server_config(version, settings.engine)
    config = dataclasses.replace(config, host=role.engine_host)
    binary = build.binary("llama-server")
    actor = f"engine@{socket.gethostname()}"
    stopping = asyncio.Event()
    engine = EngineSupervisor(
        name=version.key,
        command=lambda port: config.argv(binary, port),
        log_path=engine_log_path(paths.data_dir() / "logs", version),
        policy=RestartPolicy.of(settings.engine),
        on_change=lambda e: stopping.set() if e.state == EngineState.FAILED else None,
        pre_launch=partial(verify_artifact, store, checker, version, actor),
        port=role.engine_port,
    )
    ops = EngineOps(engine, version)
    ops_port = role.ops_port or role.engine_port + 1
    server = OpsServer(
        uvicorn.Config(ops, host=role.engine_host, port=ops_port, lifespan="on", access_log=False, log_config=None)
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    engine.start()
    serving = asyncio.create_task(server.serve(), name="engine-ops")
    log.info(
        "engine %s on http://%s:%d (health, ready, metrics on port %d)",
        version.key,
        role.engine_host,
        role.engine_port,
        ops_port,
    )
    await stopping.wait()
    failed = engine.state == EngineState.FAILED
    if failed:
        log.error("engine %s gave up: %s", version.key, engine.unavailable_reason())
    else:
        ops.draining = True
        log.info("stopping: not ready now; the engine stops in %.0f s", role.stop_grace_s)
        await asyncio.sleep(role.stop_grace_s)
    await engine.stop()
    server.should_exit = True
    await serving
    return 1 if failed else 0


async def _reply(send: Send, status: int, body: object, content_type: str = "application/json") -> None:
    payload = body if isinstance(body, bytes) else orjson.dumps(body)
    headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
