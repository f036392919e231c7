"""Keep the running engines and the gateway's catalog in step with the registry.

The loop polls the registry's revision (one indexed query a second, or at once when the admin API pokes it).
On a change it starts an engine for every version that newly needs one, waits until those are ready, and only
then swaps in a catalog that routes to them; engines nobody routes to any more are drained (their in-flight
requests, streams included, finish) and stopped. That is what makes a promotion or a rollback lose no request.
If the database cannot be reached, the gateway keeps serving the last snapshot it read.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path

from modelyard.deploy.adapter_sets import after_unload, plan_adapters
from modelyard.deploy.engine_config import VLLM, engine_kind, engine_log_path, llama_server_config, vllm_server_config
from modelyard.deploy.plan import choose_routes, serving_plan
from modelyard.deploy.rollout_split import TrafficSplit, with_splits
from modelyard.deploy.routes import (
    CatalogInputs,
    adapters_wanted,
    build_catalog,
    desired_instances,
    instance_index,
    instance_name,
    instances_to_retire,
    resolve_deployments,
    version_key,
    versions_of,
)
from modelyard.deploy.settings import ControlSettings
from modelyard.engines.llamacpp_build import EngineBuild
from modelyard.engines.remote import RemoteUpstream, bearer_header
from modelyard.engines.settings import EngineSettings
from modelyard.engines.supervisor import CommandFactory, EngineState, EngineSupervisor, LaunchRefused, RestartPolicy
from modelyard.engines.vllm_install import VllmEnvironment
from modelyard.engines.vllm_lora import LoraUpdateError, load_adapter, unload_adapter
from modelyard.engines.vllm_settings import VllmSettings
from modelyard.observability.engine_metrics import relabel
from modelyard.observability.metrics import GatewayMetrics
from modelyard.registry.integrity import ArtifactIntegrityError, IntegrityChecker
from modelyard.registry.pricing import model_prices
from modelyard.registry.records import RegistrySnapshot, VersionRecord
from modelyard.registry.store import RegistryStore
from modelyard.routing.catalog import ModelCatalog
from modelyard.routing.config import DeploymentsSpec, TargetSpec
from modelyard.routing.model import Replica
from modelyard.store.database import StoreUnavailable

log = logging.getLogger("modelyard.deploy")


class Reconciler:
    def __init__(
        self,
        store: RegistryStore,
        checker: IntegrityChecker,
        build: EngineBuild,
        engine_settings: EngineSettings,
        policy: RestartPolicy,
        log_dir: Path,
        metrics: GatewayMetrics,
        actor: str,
        control: ControlSettings | None = None,
        on_nothing_servable: Callable[[str], None] | None = None,
        min_drain_s: float = 0.0,
        vllm_settings: VllmSettings | None = None,
        vllm: VllmEnvironment | None = None,
    ) -> None:
        """``min_drain_s``: how long a retired engine keeps running at least, for requests this process does not
        count (the workers of ``serve --workers`` send them; they stop routing to it within a second)."""
        self._min_drain_s = min_drain_s
        self._store = store
        self._vllm_settings = vllm_settings or VllmSettings()
        self._vllm = vllm  # None: vLLM is not installed, and HF-format versions are refused with how to install it
        self._checker = checker
        self._build = build
        self._engine_settings = engine_settings
        self._policy = policy
        self._log_dir = log_dir
        self._metrics = metrics
        self._actor = actor
        control = control or ControlSettings()
        self._poll_interval_s = control.registry_poll_s
        self._drain_timeout_s = control.drain_timeout_s
        self._on_nothing_servable = on_nothing_servable
        self.catalog = ModelCatalog({})
        self.engines: dict[str, EngineSupervisor] = {}
        self.draining: dict[str, EngineSupervisor] = {}
        self.revision = -1
        self.registry_error: str | None = None
        self._versions: dict[str, VersionRecord] = {}  # version key → record, for every engine instance
        self._replicas: dict[str, Replica] = {}  # engine instance name or remote URL → its replica
        self._registry_routes: dict[str, str] = {}  # registry id → version key, as last published
        self._adapter_sets: dict[str, tuple[str, ...]] = {}  # base key → adapter keys its engines hold, in id order
        self._lora_enabled: set[str] = set()  # vLLM bases launched with LoRA support
        self._superseded: set[int] = set()  # ids of engines replaced by a relaunch (their successor has the name)
        self._snapshot: RegistrySnapshot | None = None
        self._apply_lock = asyncio.Lock()
        self.deployments = DeploymentsSpec()
        self.deployments_source = "<none>"
        self.splits: tuple[TrafficSplit, ...] = ()  # active rollouts' traffic splits, laid over the file
        self._prices: dict[str, tuple[float, float]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._drains: set[asyncio.Task[None]] = set()
        metrics.watch_engine_load(self.engine_load)

    # -- lifecycle ----------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Read the registry and start every engine it asks for; the catalog routes to them at once (they
        answer 503 until ready, and /ready says so), instead of holding start-up until all are loaded."""
        snapshot = await asyncio.to_thread(self._store.snapshot)
        resolve_deployments(snapshot, self.deployments, self.deployments_source, strict=True)
        async with self._apply_lock:
            await self._apply(snapshot, initial=True)
        self._task = asyncio.create_task(self._loop(), name="registry-reconciler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for task in list(self._drains):
            task.cancel()
        everything = [*self.engines.values(), *self.draining.values()]
        await asyncio.gather(*(engine.stop() for engine in everything), return_exceptions=True)

    async def apply_deployments(self, spec: DeploymentsSpec, source: str, fresh: bool = True) -> None:
        """Serve a new deployments file: refused as a whole (:class:`DeploymentsError`) if a reference does not
        resolve; else new engines are started and ready before the new routes reach them. ``fresh=False``:
        resolve against the snapshot served now (a text another replica validated already)."""
        async with self._apply_lock:
            if not fresh and self._snapshot is not None:
                snapshot = self._snapshot
            else:
                try:  # a fresh read: the file may name a version registered a moment ago
                    snapshot = await asyncio.to_thread(self._store.snapshot)
                except StoreUnavailable:
                    if self._snapshot is None:
                        raise
                    snapshot = self._snapshot  # the database is down: resolve against what is being served
            resolve_deployments(snapshot, spec, source, strict=True)
            previous = self.deployments, self.deployments_source
            self.deployments, self.deployments_source = spec, source
            try:
                await self._apply(snapshot, initial=False)
            except BaseException:
                self.deployments, self.deployments_source = previous
                raise

    async def apply_splits(self, splits: tuple[TrafficSplit, ...]) -> None:
        """Serve new rollout splits: a candidate's engines are started and ready before its share reaches them.
        Refused as a whole (:class:`DeploymentsError`) if a split's versions do not resolve."""
        async with self._apply_lock:
            snapshot = self._snapshot if self._snapshot is not None else await asyncio.to_thread(self._store.snapshot)
            resolve_deployments(snapshot, with_splits(self.deployments, splits), "rollouts", strict=True)
            previous, self.splits = self.splits, splits
            try:
                await self._apply(snapshot, initial=False)
            except BaseException:
                self.splits = previous
                raise

    def poke(self) -> None:
        """Apply registry changes now rather than at the next poll (the admin API calls this after a write)."""
        self._wake.set()

    # -- state for /ready ---------------------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Ready when something serves and nothing that serves is still starting or restarting."""
        serving = self.catalog.upstreams()
        return any(u.ready for u in serving) and all(
            u.ready or getattr(u, "state", None) == EngineState.FAILED for u in serving
        )

    async def engine_metrics(self) -> bytes:
        """Every ready engine's own metrics, labelled with engine, model and version (fetched concurrently)."""
        engines = list(self.engines.values())
        texts = await asyncio.gather(*(engine.scrape_metrics() for engine in engines))
        labelled = []
        for engine, text in zip(engines, texts, strict=True):
            if text:
                model, version = _labels(engine.name)
                labelled.append(({"engine": engine.name, "model": model, "version": version}, text))
        return relabel(labelled)

    def engine_load(self) -> list[tuple[str, str, str, int]]:
        """(engine, model, version, in-flight requests) for every running or retiring engine."""
        rows = []
        for engine in [*self.engines.values(), *self.draining.values()]:
            model, version = _labels(engine.name)
            rows.append((engine.name, model, version, engine.active_requests))
        return rows

    def describe(self) -> dict[str, object]:
        return {
            "routes": self.catalog.routes(),
            "engines": [e.describe() for e in self.engines.values()],
            "retiring": [e.describe() for e in self.draining.values()],
            "registry": {
                "revision": self.revision,
                "reachable": self.registry_error is None,
                "error": self.registry_error,
            },
        }

    # -- the loop -----------------------------------------------------------------------------------------------

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_interval_s)
            self._wake.clear()
            try:
                revision = await asyncio.to_thread(self._store.revision)
                self._reachable()  # before the comparison: an outage that changed nothing ends here too
                if revision == self.revision:
                    continue
                snapshot = await asyncio.to_thread(self._store.snapshot)
            except StoreUnavailable as exc:
                if self.registry_error is None:
                    log.warning("registry unreachable; serving the last snapshot (revision %d): %s", self.revision, exc)
                self.registry_error = str(exc)
                continue
            self._reachable()
            try:
                async with self._apply_lock:
                    await self._apply(snapshot, initial=False)
            except Exception:
                log.exception("applying registry revision %d failed; still serving the previous one", snapshot.revision)

    def _reachable(self) -> None:
        if self.registry_error is not None:
            log.info("registry reachable again")
            self.registry_error = None

    async def _apply(self, snapshot: RegistrySnapshot, initial: bool) -> None:
        self._snapshot = snapshot
        plan = serving_plan(snapshot)
        effective = with_splits(self.deployments, self.splits)
        resolved = resolve_deployments(snapshot, effective, self.deployments_source, strict=False)
        self._prices = {name: model_prices(model) for name, model in snapshot.models.items()}
        versions = {**plan.versions, **versions_of(resolved)}
        self._versions.update(versions)
        wanted = desired_instances(plan, resolved)
        adapters = adapters_wanted(resolved)
        self._versions.update({a.key: a for held in adapters.values() for a in held})
        running = {version_key(name): engine.kind for name, engine in self.engines.items()}
        keys = {base: tuple(a.key for a in held) for base, held in adapters.items()}
        changes = plan_adapters(running, self._adapter_sets, keys, self._lora_enabled)
        replaced = self._take_for_relaunch(changes.relaunch)
        self._adapter_sets.update(changes.sets)
        launched = [
            self._launch(versions[key], instance_name(key, index))
            for key, count in wanted.items()
            for index in range(count)
            if instance_name(key, index) not in self.engines
        ]
        if changes.load:
            await self._load_adapters(changes.load)
        if launched and not initial:
            await self._settle(launched)
        ready = {version_key(name) for name, engine in self.engines.items() if engine.ready}
        before = self._registry_routes
        routes = choose_routes(plan, ready, before, hold=not initial)
        self.catalog = build_catalog(
            CatalogInputs(
                plan=plan,
                registry_routes=routes,
                versions=self._versions,
                replicas_of=self._replicas_of,
                remote_replica=self._remote_replica,
                prices=self._prices,
                embeddings=self._engine_settings.embeddings,
                spec=effective,
                resolved=resolved,
                parallel=self._engine_settings.parallel,
                vllm_native_tools=bool(self._vllm_settings.vllm_tool_call_parser),
                adapters_of=lambda key: self._adapter_sets.get(key, ()),
            )
        )
        for name, engine in replaced:
            self._retire_replaced(name, engine)
        if changes.unload:
            await self._unload_adapters(changes.unload)
        self._registry_routes = routes
        self.revision = snapshot.revision
        for name in instances_to_retire(self.engines, wanted, set(routes.values())):
            self._retire(name)
        self._forget_unused_remotes()
        if routes != before:
            names = {r: k for r, k in routes.items() if "@" not in r and ":" not in r}
            log.info("serving registry revision %d: %s", snapshot.revision, names or "nothing")

    def _replicas_of(self, key: str) -> tuple[Replica, ...]:
        names = sorted((n for n in self.engines if version_key(n) == key), key=instance_index)
        return tuple(self._replicas[n] for n in names)

    def _remote_replica(self, url: str, target: TargetSpec) -> Replica:
        replica = self._replicas.get(url)
        if replica is None:
            replica = self._replicas[url] = Replica(url, RemoteUpstream(url), bearer_header(target.api_key_env))
        replica.max_concurrency = target.max_concurrency
        return replica

    def _forget_unused_remotes(self) -> None:
        used = {id(r) for r in self.catalog.replicas()}
        for name, replica in list(self._replicas.items()):
            if isinstance(replica.upstream, RemoteUpstream) and id(replica) not in used:
                del self._replicas[name]

    def _launch(self, version: VersionRecord, name: str) -> EngineSupervisor:
        kind = engine_kind(version)
        command, policy = self._vllm_command(version) if kind == VLLM else self._llama_command(version)
        log_path = engine_log_path(self._log_dir, version)
        if name != version.key:
            log_path = log_path.with_name(f"{log_path.stem}-r{instance_index(name) + 1}{log_path.suffix}")
        engine = EngineSupervisor(
            name=name,
            command=command,
            log_path=log_path,
            policy=policy,
            on_change=self._engine_changed,
            pre_launch=partial(self._verify_artifact, version),
            kind=kind,
        )
        self.engines[name] = engine
        # the engine's own slots: llama.cpp's --parallel, vLLM's --max-num-seqs (more wait in the gateway, fairly)
        slots = self._vllm_settings.vllm_max_num_seqs if kind == VLLM else self._engine_settings.parallel
        self._replicas[name] = Replica(name, engine, max_concurrency=slots)
        engine.start()
        return engine

    def _adapters_of(self, key: str) -> tuple[VersionRecord, ...]:
        return tuple(self._versions[a] for a in self._adapter_sets.get(key, ()))

    def _llama_command(self, version: VersionRecord) -> tuple[CommandFactory, RestartPolicy]:
        """The adapters are read at every (re)launch: a restarted engine loads the set it holds now."""
        binary = self._build.binary("llama-server")

        def command(port: int) -> list[str]:
            config = llama_server_config(version, self._engine_settings, self._adapters_of(version.key))
            return config.argv(binary, port)

        return command, self._policy

    def _vllm_command(self, version: VersionRecord) -> tuple[CommandFactory, RestartPolicy]:
        """``vllm serve`` for an HF-format version; it loads for minutes, so it gets its own ready timeout. A base
        that serves adapters is launched with LoRA support and the adapters it holds then (run-time loads after
        that are loaded again at a restart)."""
        policy = dataclasses.replace(self._policy, ready_timeout_s=self._vllm_settings.vllm_ready_timeout_s)
        environment = self._vllm
        if self._adapter_sets.get(version.key):
            self._lora_enabled.add(version.key)
        else:
            self._lora_enabled.discard(version.key)
        lora = version.key in self._lora_enabled

        def command(port: int) -> list[str]:
            config = vllm_server_config(version, self._vllm_settings, self._adapters_of(version.key), lora)
            if environment is not None:
                config = dataclasses.replace(config, preload=environment.preload())
            return config.argv(environment.vllm if environment else Path("vllm"), port)

        return command, policy

    def _take_for_relaunch(self, keys: frozenset[str]) -> list[tuple[str, EngineSupervisor]]:
        """Take the engines of bases that need another adapter set out of the running ones (the normal launch
        path then starts their successors); they keep serving the current catalog until it is swapped."""
        taken = []
        for name in sorted(n for n in self.engines if version_key(n) in keys):
            log.info("engine %s is relaunched with another set of LoRA adapters", name)
            taken.append((name, self.engines.pop(name)))
            self._replicas.pop(name, None)
        return taken

    def _retire_replaced(self, name: str, engine: EngineSupervisor) -> None:
        key = f"{name} (replaced, pid {engine.pid})"
        self._superseded.add(id(engine))
        self.draining[key] = engine
        task = asyncio.create_task(self._drain(key, engine, replaced=True), name=f"drain-{key}")
        self._drains.add(task)
        task.add_done_callback(self._drains.discard)

    async def _load_adapters(self, load: Mapping[str, tuple[str, ...]]) -> None:
        """vLLM: load new adapters into the running, ready engines of their base before routes reach them; an
        adapter that fails to load is left out of the set (its target stays unavailable and says why)."""
        for key, names in load.items():
            for name in names:
                adapter = self._versions[name]
                try:
                    await verify_artifact(self._store, self._checker, adapter, self._actor)
                    for engine in (e for n, e in self.engines.items() if version_key(n) == key and e.ready):
                        await load_adapter(engine.base_url, adapter.key, adapter.artifact_path)
                    log.info("LoRA adapter %s loaded on %s", adapter.key, key)
                except (LaunchRefused, LoraUpdateError) as exc:
                    log.error("LoRA adapter %s not loaded on %s: %s", adapter.key, key, exc)
                    self._adapter_sets[key] = tuple(a for a in self._adapter_sets.get(key, ()) if a != name)

    async def _unload_adapters(self, unload: Mapping[str, tuple[str, ...]]) -> None:
        for key, names in unload.items():
            for engine in (e for n, e in self.engines.items() if version_key(n) == key and e.ready):
                for name in names:
                    try:
                        await unload_adapter(engine.base_url, name)
                    except LoraUpdateError as exc:
                        log.warning("LoRA adapter %s not unloaded from %s: %s", name, engine.name, exc)
        self._adapter_sets.update(after_unload(self._adapter_sets, unload))

    async def _settle(self, engines: list[EngineSupervisor]) -> None:
        """Wait until each new engine is ready or has given up (failed starts, refused artifact)."""
        await asyncio.gather(*(engine.wait_settled() for engine in engines))

    async def _verify_artifact(self, version: VersionRecord) -> None:
        if engine_kind(version) == VLLM and self._vllm is None:
            raise LaunchRefused(
                f"{version.key} is a Hugging Face-format version, served by vLLM, and vLLM is not installed "
                f"({self._vllm_settings.vllm_device}): run `make setup-vllm` or `modelyard engine install vllm`"
            )
        await verify_artifact(self._store, self._checker, version, self._actor)
        for adapter in self._adapters_of(version.key):
            await verify_artifact(self._store, self._checker, adapter, self._actor)

    def _retire(self, key: str) -> None:
        engine = self.engines.pop(key)
        self._replicas.pop(key, None)
        self.draining[key] = engine
        task = asyncio.create_task(self._drain(key, engine), name=f"drain-{key}")
        self._drains.add(task)
        task.add_done_callback(self._drains.discard)

    async def _drain(self, key: str, engine: EngineSupervisor, replaced: bool = False) -> None:
        deadline = time.monotonic() + self._drain_timeout_s
        if self._min_drain_s:
            await asyncio.sleep(min(self._min_drain_s, self._drain_timeout_s))
        # Polled rather than signalled: the counter lives on the hot path, which should not pay for a wake-up.
        while engine.active_requests > 0 and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        if engine.active_requests > 0:
            log.warning(
                "engine %s still has %d requests after %.0f s; stopping it",
                key,
                engine.active_requests,
                self._drain_timeout_s,
            )
        await engine.stop()
        self._superseded.discard(id(engine))  # stopped: it reports nothing more (and its id may be reused)
        if self.draining.get(key) is engine:
            del self.draining[key]
        if key not in self.engines and not replaced:  # not re-launched meanwhile
            model, version = _labels(key)
            self._metrics.engine_retired(key, model, version)
        log.info("engine %s drained and stopped", key)

    def _engine_changed(self, engine: EngineSupervisor) -> None:
        if id(engine) in self._superseded:
            return  # its successor, under the same name, is the one the metrics describe
        model, version = _labels(engine.name)
        cold_start = (engine.kind, engine.cold_start_s) if engine.ready and engine.cold_start_s is not None else None
        self._metrics.engine_state_changed(engine.name, model, version, engine.ready, engine.restarts, cold_start)
        if engine.state != EngineState.FAILED or self._on_nothing_servable is None:
            return
        serving = self.catalog.upstreams()
        if engine in serving and all(getattr(u, "state", None) == EngineState.FAILED for u in serving):
            self._on_nothing_servable(engine.failure or f"engine {engine.name} failed")


async def verify_artifact(store: RegistryStore, checker: IntegrityChecker, version: VersionRecord, actor: str) -> None:
    """Before an engine loads a version: its artifact's sha256 must be the registered one. A mismatch is recorded
    in the registry (the version is marked, the audit log has it) and refuses the launch."""
    started = time.monotonic()
    try:
        result = await asyncio.to_thread(checker.verify, version.artifact_path, version.sha256, version.size_bytes)
    except ArtifactIntegrityError as exc:
        with contextlib.suppress(StoreUnavailable):
            await asyncio.to_thread(store.record_integrity_failure, version.model, version.number, str(exc), actor)
        raise LaunchRefused(f"{version.key} failed its integrity check: {exc}") from exc
    if not result.from_cache:
        log.info("verified %s sha256 in %.1f s", version.key, time.monotonic() - started)


def _labels(instance: str) -> tuple[str, str]:
    """(model, version) metric labels of an engine instance name such as ``gemma:1`` or ``gemma:1#2``."""
    model, _, version = version_key(instance).rpartition(":")
    return model, version
