"""Run modelyard's real gateway in front of a fixed upstream URL (the mock upstream), for benchmarks.

To measure the gateway alone it must stand in front of something that costs (nearly) nothing. The product has a
runtime for exactly that: ``roles/runtime.py``'s :class:`Runtime` over ``deploy/static.py``'s fixed list of upstream
URLs instead of supervised engines, served by the same uvicorn set-up as ``modelyard serve``
(``roles/server.py``). Every byte of a request goes through the product's code; only engine supervision is left
out. This launcher only parses its flags and picks which features are on.

Run it with the product's own interpreter so the gateway uses exactly the product's dependencies:

    .venv/bin/python -m bench.gateway_launcher --port 9200 --upstream http://127.0.0.1:9100 --model mock-model
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from modelyard.deploy.static import StaticUpstreams
from modelyard.gateway.settings import GatewaySettings
from modelyard.observability.logs import configure_logging
from modelyard.observability.metrics import GatewayMetrics
from modelyard.observability.routing_metrics import RoutingMetrics
from modelyard.observability.settings import ObservabilitySettings
from modelyard.roles.runtime import Runtime
from modelyard.roles.server import bind_listener, serve_app
from modelyard.roles.settings import ServerSettings
from modelyard.roles.stores import open_database
from modelyard.routing.config import load_deployments
from modelyard.security.key_store import NewKey
from modelyard.security.keys import INFERENCE, PEPPER_ENV, KeyLimits
from modelyard.security.layer import SecurityLayer
from modelyard.security.settings import SecuritySettings


def _security(key: str, db_path: Path | None, metrics: GatewayMetrics, limited: bool = True) -> SecurityLayer:
    """Keys required, with one key whose rpm/tpm limits are so high they never bite (the limiter still runs)."""
    os.environ.setdefault(PEPPER_ENV, "bench-pepper")
    database = open_database(f"sqlite:///{db_path or Path(tempfile.mkdtemp()) / 'security.db'}")
    layer = SecurityLayer(database, SecuritySettings(auth=True), metrics.registry)
    if layer.keys.count() == 0:
        limits = KeyLimits(rpm=10**9, tpm=10**12) if limited else KeyLimits()
        layer.keys.create(NewKey("bench", scopes=(INFERENCE,), limits=limits), "bench", secret=key)
    return layer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", help="base URL of the OpenAI-compatible upstream")
    parser.add_argument("--deployments", type=Path, help="a deployments file of routes over remote URL targets")
    parser.add_argument("--model", default="mock-model", help="model name served (and sent upstream)")
    parser.add_argument("--max-body-bytes", type=int, default=GatewaySettings.max_body_bytes)
    parser.add_argument("--log-level", default="warning")
    parser.add_argument("--log-format", default="text", choices=("text", "json"))
    parser.add_argument("--log-requests", action="store_true", help="one log line per request (needs info level)")
    parser.add_argument("--request-log", type=Path, help="store every request in this SQLite file")
    parser.add_argument("--unobserved", action="store_true", help="no metrics, log lines or request log per request")
    parser.add_argument("--auth-key", help="require this API key (stored in --security-db with huge rpm/tpm limits)")
    parser.add_argument("--security-db", type=Path, help="SQLite file for the key table (with --auth-key)")
    parser.add_argument("--auth-no-limits", action="store_true", help="the --auth-key has no limits (auth only)")
    parser.add_argument(
        "--server", choices=("uvicorn", "granian"), default="uvicorn",
        help="HTTP server: the product's uvicorn set-up, or granian (ASGI, embedded in this process's uvloop)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.upstream is None and args.deployments is None:
        parser.error("give --upstream, --deployments or both")
    configure_logging(args.log_level, args.log_format)
    metrics = GatewayMetrics()
    request_log = open_database(f"sqlite:///{args.request_log}").url if args.request_log is not None else None
    observability = ObservabilitySettings(
        log_level=args.log_level,
        log_format=args.log_format,
        log_requests=args.log_requests,
        request_log=request_log is not None,
    )
    security = None
    if args.auth_key:
        security = _security(args.auth_key, args.security_db, metrics, limited=not args.auth_no_limits)
    runtime = Runtime(
        StaticUpstreams(
            metrics,
            {args.model: [args.upstream]} if args.upstream else {},
            load_deployments(args.deployments) if args.deployments else None,
        ),
        metrics,
        RoutingMetrics(metrics.registry),
        GatewaySettings(max_body_bytes=args.max_body_bytes),
        observability,
        request_log=request_log,
        security=security,
        watched=not args.unobserved,
    )
    if args.server == "granian":
        return _serve_granian(runtime.app, args.host, args.port)
    listener = bind_listener(args.host, args.port)
    server = serve_app(runtime.app, ServerSettings(host=args.host, port=args.port), args.log_level)
    server.run(sockets=[listener])
    return server.exit_code


def _serve_granian(app: object, host: str, port: int) -> int:
    """The same app under granian's embedded ASGI server (Rust HTTP/1 over hyper, one runtime thread), on uvloop.
    Only for the HTTP-layer comparison (bench/http_layer.py): granian is not the product's server."""
    import uvloop
    from granian.constants import HTTPModes, Interfaces
    from granian.server.embed import Server

    server = Server(app, address=host, port=port, interface=Interfaces.ASGI, http=HTTPModes.http1, backlog=4096,
                    log_enabled=False, websockets=False)  # fmt: skip
    uvloop.run(server.serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
