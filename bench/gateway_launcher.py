"""Run modelyard's real gateway in front of a remote OpenAI-compatible URL (the mock upstream), for benchmarks.

``modelyard serve`` only fronts engines it launches itself; to measure the gateway alone we need it in front of
something that costs (nearly) nothing. This launcher assembles the same pieces ``modelyard serve`` does — the
``ModelyardApp`` ASGI app, ``InferenceHandlers``, ``Proxy``, the pooled upstream session, ``GatewayMetrics`` and
uvicorn with :func:`modelyard.server.gateway_config` — but the served model's upstream is a fixed URL satisfying the
``Upstream`` protocol of ``gateway/catalog.py`` instead of a supervised llama-server. Every byte of a request goes
through the product's code; only engine supervision is left out.

Run it with the product's own interpreter so the gateway uses exactly the product's dependencies:

    .venv/bin/python -m bench.gateway_launcher --port 9200 --upstream http://127.0.0.1:9100 --model mock-model
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

from modelyard.api.app import ModelyardApp
from modelyard.gateway.catalog import ModelCatalog, Replica, Route, RouteTarget, ServedModel
from modelyard.gateway.decide import RouteDecider
from modelyard.gateway.handlers import InferenceHandlers, RequestLimits
from modelyard.gateway.proxy import Proxy
from modelyard.gateway.shadow import ShadowMirror
from modelyard.gateway.upstream_client import UpstreamClientSettings, create_session
from modelyard.observability.logs import configure_logging
from modelyard.observability.metrics import GatewayMetrics
from modelyard.observability.observers import ObservabilityOptions, RequestObservers
from modelyard.observability.record_shipper import RequestLogSettings
from modelyard.observability.routing_metrics import RoutingMetrics
from modelyard.security.key_store import NewKey
from modelyard.security.keys import INFERENCE, PEPPER_ENV, KeyLimits
from modelyard.security.layer import SecurityLayer, SecuritySettings
from modelyard.server import GatewayServer, bind_listener, gateway_config
from modelyard.settings import ServeSettings
from modelyard.store import migrate
from modelyard.store.database import Database


class RemoteUpstream:
    """An always-ready upstream at a fixed URL (``gateway.catalog.Upstream``)."""

    def __init__(self, name: str, base_url: str) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.ready = True
        self.active_requests = 0

    def retry_after_s(self) -> int:
        return 1

    def unavailable_reason(self) -> str:
        return "remote upstream"

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "state": "remote", "ready": self.ready, "base_url": self.base_url}


class RemoteRuntime:
    """What ``ModelyardApp`` needs from ``modelyard.runtime.Runtime``, with remote upstreams instead of engines
    and no registry (so no admin API)."""

    admin = None

    def __init__(
        self,
        upstreams: list[RemoteUpstream],
        limits: RequestLimits,
        log_requests: bool,
        request_log: Path | None = None,
        observe: bool = True,
        log_format: str = "text",
        security: SecurityLayer | None = None,
        log_level: str = "warning",
    ) -> None:
        self.metrics = GatewayMetrics()
        self._upstreams = upstreams
        created = int(time.time())
        routes = {}
        for u in upstreams:
            served = ServedModel(name=u.name, version=1, created=created)
            routes[u.name] = Route(u.name, (RouteTarget(served.key, served, (Replica(u.name, u),)),))
        self._catalog = ModelCatalog(routes)
        routing = RoutingMetrics(self.metrics.registry)
        self._proxy = Proxy(self.metrics, routing)
        database_url = None
        if request_log is not None:
            database = Database(f"sqlite:///{request_log}")
            migrate.upgrade(database)
            database_url = database.url
            database.dispose()
        options = ObservabilityOptions(
            log_requests=log_requests,
            log_format=log_format,
            log_level=log_level,
            request_log=RequestLogSettings() if database_url is not None else None,
        )
        self.observers = RequestObservers.build(self.metrics, options, database_url)
        observers = self.observers if observe else _Unobserved()  # "watching off": nothing per request
        self._observers_for_requests = observers
        self._routing = routing
        self._limits = limits
        self.security = security  # API keys + limits (bench.auth_cost); None: no auth, as before
        self.handlers = self.build_handlers()
        for upstream in upstreams:
            self.metrics.engine_state_changed(upstream.name, upstream.name, "1", True, 0)
        self.metrics.watch_engine_load(lambda: [(u.name, u.name, "1", u.active_requests) for u in upstreams])

    def build_handlers(self) -> InferenceHandlers:
        observers = self._observers_for_requests
        shadow = ShadowMirror(lambda: self._proxy.session, self._routing, observers.shadow, random.random)
        return InferenceHandlers(
            self.catalog, self._proxy, self.metrics, self._limits, observers, RouteDecider(self._routing), shadow,
            self.security,
        )  # fmt: skip

    def catalog(self) -> ModelCatalog:
        return self._catalog

    def describe(self) -> dict[str, object]:
        return {"engines": [u.describe() for u in self._upstreams]}

    async def engine_metrics(self) -> bytes:
        return b""  # the mock has no engine metrics

    @property
    def ready(self) -> bool:
        return all(u.ready for u in self._upstreams)

    async def start(self) -> None:
        self._proxy.session = create_session(UpstreamClientSettings())
        await self.observers.start()
        if self.security is not None:
            await self.security.start(actor="bench")

    async def stop(self) -> None:
        if self.security is not None:
            await self.security.stop()
        await self.observers.stop()
        if self._proxy.session is not None:
            await self._proxy.session.close()


def _security(key: str, db_path: Path | None, runtime: RemoteRuntime, limited: bool = True) -> SecurityLayer:
    """Keys required, with one key whose rpm/tpm limits are so high they never bite (the limiter still runs)."""
    os.environ.setdefault(PEPPER_ENV, "bench-pepper")
    database = Database(f"sqlite:///{db_path or Path(tempfile.mkdtemp()) / 'security.db'}")
    migrate.upgrade(database)
    layer = SecurityLayer(database, SecuritySettings(auth=True), runtime.metrics.registry)
    if layer.keys.count() == 0:
        limits = KeyLimits(rpm=10**9, tpm=10**12) if limited else KeyLimits()
        layer.keys.create(NewKey("bench", scopes=(INFERENCE,), limits=limits), "bench", secret=key)
    return layer


class _Unobserved:
    def __call__(self, record: object) -> None:
        pass

    def keep_bodies(self, route: str, request_id: str) -> bool:
        return False

    def shadow(self, record: object) -> None:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="base URL of the OpenAI-compatible upstream")
    parser.add_argument("--model", default="mock-model", help="model name served (and sent upstream)")
    parser.add_argument("--max-body-bytes", type=int, default=ServeSettings.max_body_bytes)
    parser.add_argument("--log-level", default="warning")
    parser.add_argument("--log-format", default="text", choices=("text", "json"))
    parser.add_argument("--log-requests", action="store_true", help="one log line per request (needs info level)")
    parser.add_argument("--request-log", type=Path, help="store every request in this SQLite file")
    parser.add_argument("--unobserved", action="store_true", help="no metrics, log lines or request log per request")
    parser.add_argument("--auth-key", help="require this API key (stored in --security-db with huge rpm/tpm limits)")
    parser.add_argument("--security-db", type=Path, help="SQLite file for the key table (with --auth-key)")
    parser.add_argument("--auth-no-limits", action="store_true", help="the --auth-key has no limits (auth only)")
    args = parser.parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    settings = ServeSettings(
        host=args.host, port=args.port, max_body_bytes=args.max_body_bytes, log_level=args.log_level
    )
    runtime = RemoteRuntime(
        [RemoteUpstream(args.model, args.upstream)],
        RequestLimits(args.max_body_bytes),
        args.log_requests,
        request_log=args.request_log,
        observe=not args.unobserved,
        log_format=args.log_format,
        log_level=args.log_level,
    )
    if args.auth_key:
        runtime.security = _security(args.auth_key, args.security_db, runtime, limited=not args.auth_no_limits)
        runtime.handlers = runtime.build_handlers()
    app = ModelyardApp(runtime)  # type: ignore[arg-type]  # duck-typed: RemoteRuntime has what the app reads
    listener = bind_listener(settings.host, settings.port)
    server = GatewayServer(gateway_config(app, settings), on_exit_requested=app.begin_drain)
    server.run(sockets=[listener])
    return server.exit_code


if __name__ == "__main__":
    sys.exit(main())
