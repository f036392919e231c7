r"""The route model: what a client's ``model`` name leads to.

A :class:`Route` has one or more weighted :class:`RouteTarget`\ s (a registry version run as local engines, or a
remote OpenAI-compatible endpoint), each with its :class:`Replica`\ s, and the route's policies (stickiness,
retries, breaker, fallbacks, shadow, small/large routing). These are plain data built by ``deploy/routes.py``
(their only builder) and read by the pure decisions of this package and by the gateway's stages.

:class:`Replica` objects outlive catalogs: the same upstream keeps its breaker state and latency average when a
reload builds a new catalog around it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol

from modelyard.routing.breaker import CLOSED, BreakerPolicy, BreakerState
from modelyard.routing.capabilities import OPENAI_COMPATIBLE, EngineCapabilities
from modelyard.routing.complexity import ComplexityScorer
from modelyard.routing.prefix import PrefixIndex


class Upstream(Protocol):
    """Anything that serves the OpenAI HTTP API: a supervised local engine or a remote endpoint.

    ``active_requests`` is maintained by the gateway (incremented while a request is being served) so that a
    retired upstream can be drained before it is stopped. ``generation`` counts the processes behind it (0 for a
    remote endpoint, which has none of its own): failures of a process that has since been replaced say nothing
    about the new one. ``recovering`` is true while it is not ready but expected to be soon (a supervised engine
    starting or restarting): requests for it are held rather than refused (``gateway/hold.py``).
    """

    name: str
    ready: bool
    base_url: str
    active_requests: int
    generation: int

    @property
    def recovering(self) -> bool: ...

    async def wait_change(self, timeout_s: float) -> None:
        """Return at its next state change, or after ``timeout_s``."""
        ...

    def retry_after_s(self) -> int: ...

    def unavailable_reason(self) -> str: ...

    def describe(self) -> dict[str, object]: ...


@dataclass(frozen=True)
class ServedModel:
    name: str  # the registered model's name (or a remote target's model name): the bounded label metrics use
    version: int | None = None
    created: int = 0
    owned_by: str = "modelyard"
    embeddings: bool = False
    upstream_model: str | None = None  # the name the upstream knows the model by, when it must be rewritten
    price_input_per_1k: float = 0.0  # USD, for the cost metric (from the model's registry tags)
    price_output_per_1k: float = 0.0
    capabilities: EngineCapabilities = OPENAI_COMPATIBLE  # what its engine kind can do (routing/capabilities.py)
    generates: bool = True  # False for an embedding-only model (chat and completions are refused)
    # llama.cpp's per-request LoRA scales, (adapter id, scale) for every adapter its engine loaded: the request's
    # ``lora`` field, so one engine serves its base and each adapter (vLLM picks an adapter by ``upstream_model``)
    lora: tuple[tuple[int, float], ...] = ()

    def upstream_fields(self, payload: dict[str, Any]) -> dict[str, Any]:
        """``payload`` as this model's engine must receive it: its upstream name, its adapter scales."""
        if self.upstream_model is not None:
            payload = {**payload, "model": self.upstream_model}
        if self.lora:
            payload = {**payload, "lora": [{"id": index, "scale": scale} for index, scale in self.lora]}
        return payload

    @property
    def key(self) -> str:
        return self.name if self.version is None else f"{self.name}:{self.version}"


class Replica:
    """One upstream of a target plus what balancing and ejection learn about it (mutated on the hot path by
    plain attribute writes, read by pure decision functions)."""

    __slots__ = (
        "auth_header",
        "breaker",
        "breaker_policy",
        "failed_generation",
        "latency_ewma_s",
        "max_concurrency",
        "name",
        "upstream",
    )

    def __init__(self, name: str, upstream: Upstream, auth_header: bytes = b"", max_concurrency: int = 0) -> None:
        """``max_concurrency``: requests it takes at once (a local engine's slots); more wait in the gateway
        (``gateway/slots.py``); 0: no limit."""
        self.name = name
        self.max_concurrency = max_concurrency
        self.upstream = upstream
        self.auth_header = auth_header  # extra request header line for remote upstreams ("Authorization: …")
        self.breaker: BreakerState = CLOSED
        self.breaker_policy = BreakerPolicy()  # the policy of the route whose failures ejected it (for probes)
        self.latency_ewma_s: float | None = None
        self.failed_generation = 0  # the upstream's generation when the breaker last counted a failure

    @property
    def usable(self) -> bool:
        return self.upstream.ready and not self.breaker.ejected

    @property
    def replaced_since_ejection(self) -> bool:
        """Ejected for failures of an engine process that has since been replaced (the prober re-admits it at
        once: a fresh process is not the one that failed)."""
        return self.breaker.ejected and self.failed_generation != self.upstream.generation

    @property
    def coming_back(self) -> bool:
        """Not usable now, but soon: its engine is (re)starting, or it was replaced since it was ejected."""
        upstream = self.upstream
        if not upstream.ready:
            return upstream.recovering
        return self.replaced_since_ejection


class TargetState:
    """Per-target balancing state: the counter for round-robin and tie rotation (one int; races only skew the
    rotation) and, for ``prefix_cache`` balancing, which replica was sent which prompt prefix (made on first use)."""

    __slots__ = ("prefixes", "turn")

    def __init__(self) -> None:
        self.turn = 0
        self.prefixes: PrefixIndex | None = None


@dataclass(frozen=True, eq=False)
class RouteTarget:
    name: str  # the target's name in the deployments file, or the version key for registry ids
    served: ServedModel
    replicas: tuple[Replica, ...]
    weight: float = 1.0
    region: str | None = None
    remote: bool = False
    state: TargetState = field(default_factory=TargetState)
    missing: str | None = None  # why it has no replicas (e.g. its registry reference does not resolve)

    @property
    def available(self) -> bool:
        return any(r.usable for r in self.replicas)

    @cached_property
    def headers(self) -> tuple[tuple[bytes, bytes], ...]:
        """The response headers naming this target (encoded once, not per request)."""
        return ((b"x-modelyard-target", self.name.encode()), (b"x-modelyard-model-version", self.served.key.encode()))


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 2  # a registry id retries once on another replica (if it has one)
    deadline_s: float | None = None  # None: no limit (a whole answer can take minutes to generate)
    first_byte_timeout_s: float | None = None
    on_status: frozenset[int] = frozenset({500, 502, 503, 504})
    hold_s: float = 30.0  # how long a request waits for a target whose engines are (re)starting; 0: not at all
    hold_max: int = 256  # requests of the route waiting so at once; beyond, 503 at once


@dataclass(frozen=True)
class ShadowPolicy:
    target: int  # index into the route's targets
    sample: float = 1.0
    timeout_s: float = 60.0
    max_concurrent: int = 8


@dataclass(frozen=True)
class RouterPolicy:
    small: int
    large: int
    scorer: ComplexityScorer


@dataclass(frozen=True)
class RoutePolicy:
    sticky_key: str | None = None  # "user" or "header:NAME"
    balancing: str = "least_outstanding"
    affinity: str = "conversation"
    retry: RetryPolicy = RetryPolicy()
    breaker: BreakerPolicy = field(default_factory=BreakerPolicy)
    fallbacks: tuple[int, ...] = ()
    shadow: ShadowPolicy | None = None
    router: RouterPolicy | None = None


DEFAULT_POLICY = RoutePolicy()


@dataclass(frozen=True, eq=False)
class Route:
    name: str
    targets: tuple[RouteTarget, ...]
    policy: RoutePolicy = DEFAULT_POLICY
    declared: bool = False  # from the deployments file (else one of the registry's own ids)

    @property
    def primary(self) -> RouteTarget:
        return self.targets[0]

    def describe(self) -> object:
        if not self.declared:
            return self.primary.served.key
        return {
            t.name: {
                "serves": t.served.key,
                "weight": t.weight,
                "replicas": [
                    {
                        "name": r.name,
                        "ready": r.upstream.ready,
                        "ejected": r.breaker.ejected,
                        "failures": r.breaker.consecutive_failures,
                        "in_flight": r.upstream.active_requests,
                    }
                    for r in t.replicas
                ],
                **({"region": t.region} if t.region else {}),
                **({"unavailable": t.missing} if t.missing else {}),
            }
            for t in self.targets
        }
