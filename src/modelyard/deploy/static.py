"""A control plane of fixed upstream URLs: a gateway in front of OpenAI-compatible endpoints it does not launch.

No registry, no engines to supervise: each model name maps to one or more URLs, and a deployments document can
declare routes over remote targets (weights, stickiness, shadow, fallbacks, breakers — everything but registry
versions). Each URL is a replica that is always "ready"; whether it is healthy is the circuit breaker's business,
judged from real calls and probes. The benchmarks run the real gateway this way in front of their mock engine, and
the in-process tests drive the whole request path with it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from modelyard.deploy.routes import static_catalog
from modelyard.engines.remote import RemoteUpstream, bearer_header
from modelyard.observability.metrics import GatewayMetrics
from modelyard.routing.catalog import ModelCatalog
from modelyard.routing.config import DeploymentsSpec, TargetSpec
from modelyard.routing.model import Replica


class StaticUpstreams:
    def __init__(
        self,
        metrics: GatewayMetrics,
        upstreams: Mapping[str, Sequence[str]] | None = None,
        deployments: DeploymentsSpec | None = None,
    ) -> None:
        """``upstreams``: model name → base URLs of the endpoints serving it; ``deployments``: declared routes over
        remote targets."""
        self._replicas: dict[str, Replica] = {}  # by URL: breaker state and latency survive a new deployments doc
        self._upstreams = {name: tuple(self._replica(url) for url in urls) for name, urls in (upstreams or {}).items()}
        self._metrics = metrics
        self.catalog = ModelCatalog({})  # a plain attribute: read by every request
        self.apply(deployments or DeploymentsSpec(), "static")
        metrics.watch_engine_load(self._load)

    def apply(self, spec: DeploymentsSpec, source: str) -> None:
        """Serve a new deployments document (already validated): requests that resolved a route keep theirs."""
        self.catalog = static_catalog(self._upstreams, spec, self._remote, source)
        for replica in self.catalog.replicas():
            self._metrics.engine_state_changed(replica.name, replica.name, "", True, 0)

    @property
    def ready(self) -> bool:
        return True

    def describe(self) -> dict[str, object]:
        return {"routes": self.catalog.routes(), "engines": [u.describe() for u in self.catalog.upstreams()]}

    async def engine_metrics(self) -> bytes:
        return b""  # remote endpoints' own metrics are scraped from them directly

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def _replica(self, url: str, auth_header: bytes = b"") -> Replica:
        replica = self._replicas.get(url)
        if replica is None:
            replica = self._replicas[url] = Replica(url, RemoteUpstream(url), auth_header)
        return replica

    def _remote(self, url: str, target: TargetSpec) -> Replica:
        """The URL's replica, with the target's concurrency limit (``max_concurrency``)."""
        replica = self._replica(url, bearer_header(target.api_key_env))
        replica.max_concurrency = target.max_concurrency
        return replica

    def _load(self) -> list[tuple[str, str, str, int]]:
        return [(r.name, r.name, "", r.upstream.active_requests) for r in self.catalog.replicas()]
