"""From the registry snapshot, the deployments file and the running upstreams to the catalog the gateway serves.

Pure functions (no processes, no sockets): which registry version each declared target means, how many engine
processes each version needs, and the :class:`ModelCatalog` that routes to the replicas that exist. The
reconciler does the I/O around them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Set
from dataclasses import dataclass

from modelyard.deploy.capabilities import is_embedding_model, llama_cpp, remote, template_knows_tools, vllm
from modelyard.deploy.plan import ServingPlan
from modelyard.registry.adapters import is_adapter, serving_problem, standalone_reason
from modelyard.registry.errors import InvalidRequest
from modelyard.registry.hf_directory import HF_FORMAT
from modelyard.registry.records import RegistrySnapshot, VersionRecord
from modelyard.registry.references import PRODUCTION, parse_ref
from modelyard.routing.breaker import BreakerPolicy
from modelyard.routing.catalog import ModelCatalog
from modelyard.routing.complexity import ComplexityScorer
from modelyard.routing.config import DeploymentsError, DeploymentsSpec, RouteSpec, TargetSpec
from modelyard.routing.model import (
    Replica,
    RetryPolicy,
    Route,
    RoutePolicy,
    RouterPolicy,
    RouteTarget,
    ServedModel,
    ShadowPolicy,
)


@dataclass(frozen=True)
class ResolvedTarget:
    name: str
    spec: TargetSpec
    version: VersionRecord | None = None  # local targets, once the reference resolves
    missing: str | None = None  # why a local target has no version
    adapter: VersionRecord | None = None  # the LoRA adapter served on ``version`` (its parent)


def resolve_version(snapshot: RegistrySnapshot, reference: str) -> VersionRecord | str:
    """The version a reference means right now, or why it means none."""
    try:
        ref = parse_ref(reference)
    except InvalidRequest as exc:
        return exc.message
    model = snapshot.models.get(ref.name)
    if model is None:
        return f"no registered model named {ref.name!r}"
    if ref.version is not None:
        number: int | None = ref.version
    elif ref.alias is not None:
        number = model.alias_map().get(ref.alias)
        if number is None:
            return f"model {ref.name!r} has no alias {ref.alias!r}"
    else:
        number = model.production
        active = model.active_versions()
        if number is None and len(active) == 1:
            number = active[0].number
        if number is None:
            return f"model {ref.name!r} has no '{PRODUCTION}' alias"
    assert number is not None  # every branch above returned when it found no number
    version = model.version(number)
    if version is None:
        return f"model {ref.name!r} has no version {number}"
    if version.archived:
        return f"{version.key} is archived"
    return version


def resolve_deployments(
    snapshot: RegistrySnapshot, spec: DeploymentsSpec, source: str, strict: bool
) -> dict[str, list[ResolvedTarget]]:
    """Every route's targets with their versions. ``strict`` (a new file being applied) turns the first
    reference that does not resolve into a :class:`DeploymentsError`; otherwise (the registry changed under a
    running file) that target just has no replicas and says why."""
    resolved: dict[str, list[ResolvedTarget]] = {}
    for route_name, route in spec.routes.items():
        targets = []
        for name, target in route.targets.items():
            if target.model is None:
                targets.append(ResolvedTarget(name, target))
                continue
            at = f"routes.{route_name}.targets.{name}"
            version = resolve_version(snapshot, target.model)
            adapter: VersionRecord | str | None = None
            if isinstance(version, VersionRecord):
                if is_adapter(version):
                    version = standalone_reason(version)
                elif target.adapter is not None:
                    adapter = _resolve_adapter(snapshot, version, target)
            if isinstance(version, str) or isinstance(adapter, str):
                key, problem = ("model", version) if isinstance(version, str) else ("adapter", adapter)
                if strict:
                    raise DeploymentsError(source, f"{at}.{key}", str(problem))
                reference = target.model if key == "model" else target.adapter
                targets.append(ResolvedTarget(name, target, missing=f"{reference}: {problem}"))
            else:
                targets.append(ResolvedTarget(name, target, version, adapter=adapter))
        resolved[route_name] = targets
    return resolved


def _resolve_adapter(snapshot: RegistrySnapshot, base: VersionRecord, target: TargetSpec) -> VersionRecord | str:
    assert target.adapter is not None
    adapter = resolve_version(snapshot, target.adapter)
    if isinstance(adapter, str):
        return adapter
    kind = "vllm" if base.format == HF_FORMAT else "llama.cpp"
    return serving_problem(base, adapter, target.adapter_scale, kind) or adapter


def adapters_wanted(resolved: Mapping[str, list[ResolvedTarget]]) -> dict[str, tuple[VersionRecord, ...]]:
    """Base version key → the adapters the declared targets serve on it (sorted by key: llama.cpp numbers its
    ``--lora`` adapters in this order), so that every adapter of one base shares the base's engines."""
    wanted: dict[str, dict[str, VersionRecord]] = {}
    for targets in resolved.values():
        for target in targets:
            if target.version is not None and target.adapter is not None:
                wanted.setdefault(target.version.key, {})[target.adapter.key] = target.adapter
    return {key: tuple(adapters[k] for k in sorted(adapters)) for key, adapters in wanted.items()}


def desired_instances(plan: ServingPlan, resolved: Mapping[str, list[ResolvedTarget]]) -> dict[str, int]:
    """Engine processes per version key: one for every version the registry serves, more where a declared
    target asks for replicas (the largest request wins; routes share a version's processes)."""
    wanted = dict.fromkeys(plan.versions, 1)
    for targets in resolved.values():
        for target in targets:
            if target.version is not None:
                wanted[target.version.key] = max(wanted.get(target.version.key, 0), target.spec.replicas)
    return wanted


def instance_name(version_key: str, index: int) -> str:
    """``gemma:1`` for the first process of a version, ``gemma:1#2`` … for further replicas."""
    return version_key if index == 0 else f"{version_key}#{index + 1}"


def version_key(instance: str) -> str:
    return instance.split("#", 1)[0]


def instance_index(instance: str) -> int:
    _, _, replica = instance.partition("#")
    return int(replica) - 1 if replica else 0


def instances_to_retire(running: Iterable[str], wanted: Mapping[str, int], held: Set[str]) -> list[str]:
    """Engine processes neither wanted (beyond a version's replica count) nor still receiving held traffic."""
    return sorted(
        name
        for name in running
        if version_key(name) not in held and instance_index(name) >= wanted.get(version_key(name), 0)
    )


def versions_of(resolved: Mapping[str, list[ResolvedTarget]]) -> dict[str, VersionRecord]:
    return {t.version.key: t.version for ts in resolved.values() for t in ts if t.version is not None}


@dataclass(frozen=True)
class CatalogInputs:
    plan: ServingPlan
    registry_routes: Mapping[str, str]  # registry id → version key (after holding for readiness)
    versions: Mapping[str, VersionRecord]
    replicas_of: Callable[[str], tuple[Replica, ...]]  # version key → its engine replicas
    remote_replica: Callable[[str, TargetSpec], Replica]  # (url, target) → the remote upstream's replica
    prices: Mapping[str, tuple[float, float]]
    embeddings: bool
    spec: DeploymentsSpec
    resolved: Mapping[str, list[ResolvedTarget]]
    parallel: int = 8  # the engines' slots: llama.cpp's most choices (n) in one call
    vllm_native_tools: bool = False  # vLLM engines run with a --tool-call-parser
    adapters_of: Callable[[str], tuple[str, ...]] = lambda key: ()  # version key → adapters its engines loaded


def build_catalog(inputs: CatalogInputs) -> ModelCatalog:
    routes: dict[str, Route] = {}
    for route_id, key in inputs.registry_routes.items():
        served = _served_version(inputs, inputs.versions[key])
        routes[route_id] = Route(route_id, (RouteTarget(key, served, inputs.replicas_of(key)),))
    for route_name, route_spec in inputs.spec.routes.items():
        targets = tuple(_declared_target(inputs, route_name, t) for t in inputs.resolved[route_name])
        routes[route_name] = Route(route_name, targets, route_policy(route_spec), declared=True)
    unrouted = {i: why for i, why in inputs.plan.unrouted.items() if i not in routes}
    return ModelCatalog(routes, unrouted)


def _served_version(
    inputs: CatalogInputs, version: VersionRecord, adapter: VersionRecord | None = None, scale: float = 1.0
) -> ServedModel:
    """What a target serves: a version, or an adapter on it (named and priced as the adapter; the base's engine
    capabilities). On vLLM an adapter is its own served name; on llama.cpp every request states each loaded
    adapter's scale (the chosen one's, 0 for the others), so the base alone is the base."""
    named = adapter or version
    price_in, price_out = inputs.prices.get(named.model, (0.0, 0.0))
    encoder = is_embedding_model(version)
    on_vllm = version.format == HF_FORMAT
    loaded = () if on_vllm else inputs.adapters_of(version.key)
    chosen = adapter.key if adapter is not None else None
    return ServedModel(
        name=named.model,
        version=named.number,
        created=int(named.created_at.timestamp()),
        embeddings=inputs.embeddings or encoder,
        price_input_per_1k=price_in,
        price_output_per_1k=price_out,
        capabilities=(
            vllm(inputs.vllm_native_tools) if on_vllm else llama_cpp(inputs.parallel, template_knows_tools(version))
        ),
        # vLLM answers only to its --served-model-name; llama-server ignores the name, so its bytes pass as sent.
        upstream_model=(chosen or version.key) if on_vllm else None,
        generates=not encoder,
        lora=tuple((index, scale if key == chosen else 0.0) for index, key in enumerate(loaded)),
    )


def _declared_target(inputs: CatalogInputs, route_name: str, target: ResolvedTarget) -> RouteTarget:
    spec = target.spec
    if target.version is not None:
        served = _served_version(inputs, target.version, target.adapter, spec.adapter_scale)
        replicas = inputs.replicas_of(target.version.key)[: spec.replicas]
        adapter = target.adapter
        if adapter is not None and adapter.key not in inputs.adapters_of(target.version.key):
            why = f"adapter {adapter.key} is not loaded on the engines of {target.version.key} yet"
            return RouteTarget(target.name, served, (), spec.weight, spec.region, missing=why)
        return RouteTarget(target.name, served, replicas, spec.weight, spec.region)
    if target.missing is not None:
        return RouteTarget(
            target.name, ServedModel(name=target.name), (), spec.weight, spec.region, missing=target.missing
        )
    model = spec.upstream_model or route_name
    served = ServedModel(
        name=model,
        owned_by="remote",
        embeddings=True,
        upstream_model=spec.upstream_model,
        capabilities=remote(spec.engine, spec.slots),
    )
    replicas = tuple(inputs.remote_replica(url, spec) for url in spec.urls())
    return RouteTarget(target.name, served, replicas, spec.weight, spec.region, remote=True)


def route_policy(spec: RouteSpec) -> RoutePolicy:
    names = list(spec.targets)
    router = None
    if spec.router is not None:
        r = spec.router
        scorer = ComplexityScorer.configured(r.threshold, r.long_prompt_tokens, r.deep_conversation_turns, r.weights)
        router = RouterPolicy(names.index(r.small), names.index(r.large), scorer)
    shadow = None
    if spec.shadow is not None:
        s = spec.shadow
        shadow = ShadowPolicy(names.index(s.target), s.sample, s.timeout_s, s.max_concurrent)
    return RoutePolicy(
        sticky_key=spec.sticky.key if spec.sticky is not None else None,
        balancing=spec.balancing,
        affinity=spec.affinity,
        retry=RetryPolicy(
            attempts=spec.retry.attempts,
            deadline_s=spec.retry.deadline_s,
            first_byte_timeout_s=spec.retry.first_byte_timeout_s,
            on_status=frozenset(spec.retry.on_status),
            hold_s=spec.retry.hold_s,
            hold_max=spec.retry.hold_max,
        ),
        breaker=BreakerPolicy(spec.breaker.failures, spec.breaker.cooldown_s, spec.breaker.max_cooldown_s),
        fallbacks=tuple(names.index(f) for f in spec.fallbacks),
        shadow=shadow,
        router=router,
    )


def static_catalog(
    upstreams: Mapping[str, tuple[Replica, ...]],
    spec: DeploymentsSpec,
    remote_replica: Callable[[str, TargetSpec], Replica],
    source: str,
) -> ModelCatalog:
    """Routes without a registry: each name of ``upstreams`` is one target whose replicas are the given remote
    upstreams (routed like a registry id: one target, retried once on another replica), and the routes of ``spec``
    whose targets are remote URLs (a target naming a registry model has no replicas here, and says why)."""
    empty = RegistrySnapshot(revision=0, models={})
    resolved = resolve_deployments(empty, spec, source, strict=False)
    inputs = CatalogInputs(
        plan=ServingPlan(),
        registry_routes={},
        versions={},
        replicas_of=lambda key: (),
        remote_replica=remote_replica,
        prices={},
        embeddings=False,
        spec=spec,
        resolved=resolved,
    )
    fixed = {}
    for name, replicas in upstreams.items():
        served = ServedModel(name=name, owned_by="remote", embeddings=True)
        fixed[name] = Route(name, (RouteTarget(name, served, replicas, remote=True),))
    return build_catalog(inputs).with_routes(fixed)
