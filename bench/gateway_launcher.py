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
import logging
import sys
import time

from modelyard.api.app import ModelyardApp
from modelyard.gateway.catalog import ModelCatalog, ServedModel
from modelyard.gateway.handlers import InferenceHandlers, RequestLimits
from modelyard.gateway.proxy import Proxy
from modelyard.gateway.upstream_client import UpstreamClientSettings, create_session
from modelyard.observability.metrics import GatewayMetrics
from modelyard.server import GatewayServer, bind_listener, gateway_config
from modelyard.settings import ServeSettings


class RemoteUpstream:
    """An always-ready upstream at a fixed URL (``gateway.catalog.Upstream``)."""

    def __init__(self, name: str, base_url: str) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.ready = True

    def retry_after_s(self) -> int:
        return 1

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "state": "remote", "ready": self.ready, "base_url": self.base_url}


class RemoteRuntime:
    """What ``ModelyardApp`` needs from ``modelyard.runtime.Runtime``, with remote upstreams instead of engines."""

    def __init__(self, upstreams: list[RemoteUpstream], limits: RequestLimits) -> None:
        self.metrics = GatewayMetrics()
        self.supervisors = upstreams  # ModelyardApp describes them on /ready
        created = int(time.time())
        self._catalog = ModelCatalog(ServedModel(name=u.name, upstream=u, created=created) for u in upstreams)
        self._proxy = Proxy(self.metrics)
        self.handlers = InferenceHandlers(self.catalog, self._proxy, self.metrics, limits)
        for upstream in upstreams:
            self.metrics.engine_state_changed(upstream.name, True, 0)

    def catalog(self) -> ModelCatalog:
        return self._catalog

    @property
    def ready(self) -> bool:
        return all(u.ready for u in self.supervisors)

    async def start(self) -> None:
        self._proxy.session = create_session(UpstreamClientSettings())

    async def stop(self) -> None:
        if self._proxy.session is not None:
            await self._proxy.session.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="base URL of the OpenAI-compatible upstream")
    parser.add_argument("--model", default="mock-model", help="model name served (and sent upstream)")
    parser.add_argument("--max-body-bytes", type=int, default=ServeSettings.max_body_bytes)
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    settings = ServeSettings(
        host=args.host, port=args.port, max_body_bytes=args.max_body_bytes, log_level=args.log_level
    )
    runtime = RemoteRuntime([RemoteUpstream(args.model, args.upstream)], RequestLimits(args.max_body_bytes))
    app = ModelyardApp(runtime)  # type: ignore[arg-type]  # duck-typed: RemoteRuntime has what the app reads
    listener = bind_listener(settings.host, settings.port)
    server = GatewayServer(gateway_config(app, settings), on_exit_requested=app.begin_drain)
    server.run(sockets=[listener])
    return server.exit_code


if __name__ == "__main__":
    sys.exit(main())
