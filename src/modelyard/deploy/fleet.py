"""The control plane of ``modelyard gateway``: engines it does not launch, found from configuration and DNS.

A stateless gateway replica serves the same routes as every other replica: the registry (polled by revision)
says which version each model id and declared target means, the shared deployments configuration says what is
declared, and :mod:`deploy.discovery` says where each version's engines are. Every few seconds the DNS names are
re-resolved and every replica's ``/health`` is checked; a replica that fails the check is marked not ready (the
request path skips it, reading a flag) and a new address list builds a new catalog, swapped whole. Nothing here
runs on the request path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Mapping
from pathlib import Path

import aiohttp
import orjson

from modelyard.deploy.discovery import EngineSource, replica_urls, resolve
from modelyard.deploy.plan import choose_routes, serving_plan
from modelyard.deploy.rollout_split import TrafficSplit, with_splits
from modelyard.deploy.routes import CatalogInputs, build_catalog, resolve_deployments, versions_of
from modelyard.engines.remote import RemoteUpstream, bearer_header
from modelyard.observability.metrics import GatewayMetrics
from modelyard.registry.pricing import model_prices
from modelyard.registry.records import RegistrySnapshot
from modelyard.registry.store import RegistryStore
from modelyard.routing.catalog import ModelCatalog
from modelyard.routing.config import DeploymentsSpec, TargetSpec
from modelyard.routing.model import Replica
from modelyard.store.database import StoreUnavailable

log = logging.getLogger("modelyard.deploy")


class FleetControl:
    def __init__(
        self,
        store: RegistryStore,
        sources: Mapping[str, tuple[EngineSource, ...]],
        metrics: GatewayMetrics,
        registry_poll_s: float = 1.0,
        discovery_s: float = 2.0,
        parallel: int = 8,
        published: Path | None = None,
    ) -> None:
        """``sources``: version key → where its engines are; ``parallel``: the engines' slots (what one call
        may ask for at most); ``published``: the engines file of a control process (``serve --workers``), read
        when it changes (:func:`publish_engines`), whose registry revision makes this process re-read the
        registry."""
        self._published = published
        self._published_stamp: tuple[int, int] | None = None
        self._published_urls: dict[str, list[str]] = {}
        self._store = store
        self._sources = dict(sources)
        self._metrics = metrics
        self._registry_poll_s = registry_poll_s
        self._discovery_s = discovery_s
        self._parallel = parallel
        self.catalog = ModelCatalog({})  # a plain attribute: read by every request
        self.deployments = DeploymentsSpec()
        self.deployments_source = "<none>"
        self.splits: tuple[TrafficSplit, ...] = ()  # active rollouts' traffic splits, laid over the deployments
        self.revision = -1
        self.registry_error: str | None = None
        self._snapshot: RegistrySnapshot | None = None
        self._urls: dict[str, list[str]] = {}  # version key → replica URLs, as last discovered
        self._replicas: dict[str, Replica] = {}  # URL → replica: breaker state and latency survive a rebuild
        self._routes: dict[str, str] = {}
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None
        metrics.watch_engine_load(self._load)

    # -- the control plane ----------------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return any(r.upstream.ready for r in self.catalog.replicas())

    def describe(self) -> dict[str, object]:
        return {
            "routes": self.catalog.routes(),
            "engines": [r.upstream.describe() | {"ready": r.upstream.ready} for r in self._replicas.values()],
            "discovered": self._urls,
            "registry": {
                "revision": self.revision,
                "reachable": self.registry_error is None,
                "error": self.registry_error,
            },
        }

    async def engine_metrics(self) -> bytes:
        return b""  # each engine serves its own /metrics, scraped from it directly

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2))
        snapshot = await asyncio.to_thread(self._store.snapshot)
        resolve_deployments(snapshot, self.deployments, self.deployments_source, strict=True)
        await self._discover()
        async with self._lock:
            self._apply(snapshot)
        self._tasks = [
            asyncio.create_task(self._follow_registry(), name="fleet-registry"),
            asyncio.create_task(self._follow_engines(), name="fleet-discovery"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._session is not None:
            await self._session.close()

    async def apply_deployments(self, spec: DeploymentsSpec, source: str, fresh: bool = True) -> None:
        """Serve a new deployments configuration; refused as a whole (``DeploymentsError``) if a registry
        reference does not resolve. ``fresh=False``: resolve against the registry snapshot served now (a text
        another replica validated already; no registry read in the way of applying it within a second)."""
        async with self._lock:
            try:
                if not fresh and self._snapshot is not None:
                    snapshot = self._snapshot
                else:
                    snapshot = await asyncio.to_thread(self._store.snapshot)
            except StoreUnavailable:
                if self._snapshot is None:
                    raise
                snapshot = self._snapshot
            resolve_deployments(snapshot, spec, source, strict=True)
            self.deployments, self.deployments_source = spec, source
            self._apply(snapshot)

    async def apply_splits(self, splits: tuple[TrafficSplit, ...]) -> None:
        """Serve new rollout splits (the rollout service follows them from the database on every replica);
        refused as a whole (``DeploymentsError``) if a split's versions do not resolve."""
        async with self._lock:
            snapshot = self._snapshot if self._snapshot is not None else await asyncio.to_thread(self._store.snapshot)
            resolve_deployments(snapshot, with_splits(self.deployments, splits), "rollouts", strict=True)
            self.splits = splits
            self._apply(snapshot)

    def poke(self) -> None:
        """Re-read the registry now (the admin API calls this after a write)."""
        self._wake.set()

    # -- building the catalog -------------------------------------------------------------------------------

    def _apply(self, snapshot: RegistrySnapshot) -> None:
        self._snapshot = snapshot
        plan = serving_plan(snapshot)
        effective = with_splits(self.deployments, self.splits)
        resolved = resolve_deployments(snapshot, effective, self.deployments_source, strict=False)
        ready = {key for key, urls in self._urls.items() if any(self._replica(u).upstream.ready for u in urls)}
        routes = choose_routes(plan, ready, self._routes, hold=bool(self._routes))
        self.catalog = build_catalog(
            CatalogInputs(
                plan=plan,
                registry_routes=routes,
                versions={**plan.versions, **versions_of(resolved)},
                replicas_of=lambda key: tuple(self._replica(url) for url in self._urls.get(key, ())),
                remote_replica=self._remote_replica,
                prices={name: model_prices(model) for name, model in snapshot.models.items()},
                embeddings=False,
                spec=effective,
                resolved=resolved,
                parallel=self._parallel,
            )
        )
        self._routes = routes
        self.revision = snapshot.revision
        used = {id(r) for r in self.catalog.replicas()}
        discovered = {url for found in self._urls.values() for url in found}
        for url, replica in list(self._replicas.items()):
            if id(replica) not in used and url not in discovered:
                del self._replicas[url]
        for replica in self.catalog.replicas():
            self._metrics.engine_state_changed(replica.name, replica.name, "", replica.upstream.ready, 0)

    def _replica(self, url: str, auth_header: bytes = b"") -> Replica:
        replica = self._replicas.get(url)
        if replica is None:
            replica = self._replicas[url] = Replica(url, RemoteUpstream(url), auth_header)
        return replica

    def _remote_replica(self, url: str, target: TargetSpec) -> Replica:
        return self._replica(url, bearer_header(target.api_key_env))

    def _load(self) -> list[tuple[str, str, str, int]]:
        return [(r.name, r.name, "", r.upstream.active_requests) for r in self.catalog.replicas()]

    # -- the loops ------------------------------------------------------------------------------------------

    async def _follow_registry(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._registry_poll_s)
            self._wake.clear()
            try:
                revision = await asyncio.to_thread(self._store.revision)
                self.registry_error = None  # before the comparison: an outage that changed nothing ends here too
                if revision == self.revision:
                    continue
                snapshot = await asyncio.to_thread(self._store.snapshot)
            except StoreUnavailable as exc:
                if self.registry_error is None:
                    log.warning("registry unreachable; serving the last snapshot (revision %d): %s", self.revision, exc)
                self.registry_error = str(exc)
                continue
            async with self._lock:
                self._apply(snapshot)

    async def _follow_engines(self) -> None:
        while True:
            await asyncio.sleep(self._discovery_s)
            try:
                changed = await self._discover()
            except Exception:
                log.exception("engine discovery failed; keeping the replicas found before")
                continue
            if changed and self._snapshot is not None:
                async with self._lock:
                    self._apply(self._snapshot)

    async def _discover(self) -> bool:
        """Re-resolve the DNS names and health-check every replica; True when the catalog must be rebuilt."""
        names = {(s.host, s.port) for sources in self._sources.values() for s in sources if s.dns}
        answers = await asyncio.gather(*(resolve(host, port) for host, port in names))
        urls = replica_urls(self._sources, {host: found for (host, _), found in zip(names, answers, strict=True)})
        if self._published is not None:
            await self._read_published()
            for key, found in self._published_urls.items():
                urls[key] = sorted({*urls.get(key, ()), *found})
        every = sorted({u for found in urls.values() for u in found})
        health = await asyncio.gather(*(self._healthy(url) for url in every))
        flipped = False
        for url, healthy in zip(every, health, strict=True):
            upstream = self._replica(url).upstream
            if upstream.ready != healthy:
                log.info("engine %s is %s", url, "ready" if healthy else "not ready")
                upstream.ready = healthy
                flipped = True
        changed = urls != self._urls
        if changed:
            log.info("engine replicas: %s", {key: len(found) for key, found in urls.items()})
        self._urls = urls
        return changed or flipped

    async def _read_published(self) -> None:
        assert self._published is not None
        try:
            info = await asyncio.to_thread(os.stat, self._published)
            stamp = (info.st_mtime_ns, info.st_size)
            if stamp == self._published_stamp:
                return
            published = orjson.loads(await asyncio.to_thread(self._published.read_bytes))
        except (OSError, orjson.JSONDecodeError):
            return  # not written yet, or being replaced: look again next time
        self._published_stamp = stamp
        self._published_urls = {str(k): [str(u) for u in v] for k, v in published.get("engines", {}).items()}
        if published.get("revision") != self.revision:
            self._wake.set()  # the control process saw a registry change: read it now

    async def _healthy(self, url: str) -> bool:
        assert self._session is not None
        try:
            async with self._session.get(f"{url}/health") as response:
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError, OSError):
            return False


def publish_engines(path: Path, revision: int, engines: Mapping[str, list[str]]) -> None:
    """What a control process tells its workers: the registry revision it serves and the base URL of every
    ready engine by version key (written atomically; blocking: call through a thread)."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(orjson.dumps({"revision": revision, "engines": engines}, option=orjson.OPT_SORT_KEYS))
    os.replace(temporary, path)
