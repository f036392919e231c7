"""A control plane of fixed upstream URLs: a gateway in front of OpenAI-compatible endpoints it does not launch.

No registry, no engines to supervise: each model name maps to one or more URLs, each URL a replica that is always
"ready" (whether it is healthy is the circuit breaker's business, judged from real calls and probes). The
benchmarks run the real gateway this way in front of their mock engine.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from modelyard.deploy.routes import static_catalog
from modelyard.engines.remote import RemoteUpstream
from modelyard.observability.metrics import GatewayMetrics
from modelyard.routing.catalog import ModelCatalog
from modelyard.routing.model import Replica


class StaticUpstreams:
    def __init__(self, upstreams: Mapping[str, Sequence[str]], metrics: GatewayMetrics) -> None:
        """``upstreams``: model name → base URLs of the endpoints serving it."""
        self._replicas = {
            name: tuple(Replica(url, RemoteUpstream(url)) for url in urls) for name, urls in upstreams.items()
        }
        self._catalog = static_catalog(self._replicas)
        for name, replicas in self._replicas.items():
            for replica in replicas:
                metrics.engine_state_changed(replica.name, name, "", True, 0)
        metrics.watch_engine_load(self._load)

    @property
    def catalog(self) -> ModelCatalog:
        return self._catalog

    @property
    def ready(self) -> bool:
        return True

    def describe(self) -> dict[str, object]:
        return {
            "routes": self._catalog.routes(),
            "engines": [r.upstream.describe() for replicas in self._replicas.values() for r in replicas],
        }

    async def engine_metrics(self) -> bytes:
        return b""  # remote endpoints' own metrics are scraped from them directly

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def _load(self) -> list[tuple[str, str, str, int]]:
        return [(r.name, name, "", r.upstream.active_requests) for name, rs in self._replicas.items() for r in rs]
