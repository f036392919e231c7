"""The deployments file: routes, their targets and policies, validated as data before anything changes.

A route is the ``model`` name clients send. Its targets are registry versions (``name``, ``name@alias``,
``name:N``) run as one or more local engine processes, or remote OpenAI-compatible URLs. Everything else —
weights, stickiness, shadow, fallbacks, retries, balancing, small/large routing, regions — is per route.

A file is accepted whole or not at all: every error names the file, the key path and what is wrong, so that a
typo never half-applies and the running configuration keeps serving.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args
from urllib.parse import urlsplit

import msgspec
import yaml

from modelyard.registry.errors import InvalidRequest
from modelyard.registry.references import parse_ref

Balancing = Literal["least_outstanding", "round_robin", "latency_ewma", "session_affinity", "prefix_cache"]
_KEY_SOURCE = re.compile(r"^(user|conversation|header:[A-Za-z0-9-]{1,64})$")
_ROUTE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/@:-]{0,255}$")
_TARGET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


_T = TypeVar("_T")
Fail = Callable[[str, str], "DeploymentsError"]


class _Spec(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Base of every spec; each subclass also passes ``frozen=True`` so type checkers see it frozen too."""


class TargetSpec(_Spec, frozen=True):
    model: str | None = None  # a registry reference: name, name@alias or name:N
    adapter: str | None = None  # a LoRA adapter version (a registry reference) served on ``model``, its parent
    adapter_scale: float = 1.0  # how strongly llama.cpp applies the adapter per request (vLLM: 1.0 only)
    url: str | list[str] | None = None  # remote OpenAI-compatible base URL(s), one replica each
    upstream_model: str | None = None  # the name a remote upstream knows the model by (default: the route name)
    api_key_env: str | None = None  # environment variable holding a bearer token for a remote upstream
    replicas: int = msgspec.field(default=1)
    weight: float = 1.0
    region: str | None = None
    engine: Literal["openai-compatible", "llama.cpp", "vllm"] = "openai-compatible"  # a remote target's engine kind
    slots: int = msgspec.field(default=1)  # a remote llama.cpp's --parallel: the most choices (n) per call
    max_concurrency: int = 0  # a remote URL's requests at once; more wait in the gateway (fair queue); 0: no limit

    def urls(self) -> list[str]:
        if self.url is None:
            return []
        return [self.url] if isinstance(self.url, str) else list(self.url)


class StickySpec(_Spec, frozen=True):
    key: str  # "user" (the OpenAI ``user`` field) or "header:NAME"


class ShadowSpec(_Spec, frozen=True):
    target: str
    sample: float = 1.0  # share of requests mirrored
    timeout_s: float = 60.0
    max_concurrent: int = 8  # mirrored calls in flight; beyond this a mirror is skipped (and counted)


class RetrySpec(_Spec, frozen=True):
    attempts: int = 3  # upstream calls per request in total, first one included
    deadline_s: float = 300.0  # for all attempts together, until the answer starts
    first_byte_timeout_s: float | None = None  # per attempt: give up on an upstream that has not answered by then
    on_status: list[int] = msgspec.field(default_factory=lambda: [500, 502, 503, 504])
    hold_s: float = 30.0  # wait this long for a target whose engines are (re)starting before answering 503; 0: off
    hold_max: int = 256  # requests of the route held so at once; more get 503 at once


class BreakerSpec(_Spec, frozen=True):
    failures: int = 3  # consecutive failures that eject a replica
    cooldown_s: float = 5.0  # before the first probe; doubles per failed probe
    max_cooldown_s: float = 60.0


class RouterSpec(_Spec, frozen=True):
    """Small/large routing by prompt complexity (see routing/complexity.py for the features)."""

    small: str
    large: str
    threshold: float = 0.5
    long_prompt_tokens: int = 1500  # the length feature saturates at this many (estimated) prompt tokens
    deep_conversation_turns: int = 12
    weights: dict[str, float] = msgspec.field(default_factory=dict)  # feature → weight, overrides the defaults


class RouteSpec(_Spec, frozen=True):
    targets: dict[str, TargetSpec]
    sticky: StickySpec | None = None
    shadow: ShadowSpec | None = None
    fallbacks: list[str] = msgspec.field(default_factory=list)
    retry: RetrySpec = msgspec.field(default_factory=RetrySpec)
    breaker: BreakerSpec = msgspec.field(default_factory=BreakerSpec)
    balancing: Balancing = "least_outstanding"
    affinity: str = "conversation"  # key for session_affinity: conversation | user | header:NAME
    router: RouterSpec | None = None


class DeploymentsSpec(_Spec, frozen=True):
    routes: dict[str, RouteSpec] = msgspec.field(default_factory=dict)


class DeploymentsError(ValueError):
    """A deployments file that cannot be applied; the message names the file, the key path and the problem."""

    def __init__(self, source: str, path: str, problem: str) -> None:
        self.source, self.path, self.problem = source, path, problem
        super().__init__(f"{source}: {path}: {problem}" if path else f"{source}: {problem}")


def load_deployments(path: Path) -> DeploymentsSpec:
    try:
        text = path.read_text()
    except OSError as exc:
        raise DeploymentsError(str(path), "", f"cannot read the file: {exc.strerror or exc}") from None
    return parse_deployments(text, str(path))


def parse_deployments(text: str, source: str = "<deployments>") -> DeploymentsSpec:
    """YAML (or JSON, which is YAML) → a validated :class:`DeploymentsSpec`, or :class:`DeploymentsError`."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise DeploymentsError(source, where, f"not valid YAML: {getattr(exc, 'problem', None) or exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise DeploymentsError(source, "", f"the top level must be a mapping with 'routes', got {type(data).__name__}")
    unknown = sorted(set(data) - {"routes"})
    if unknown:
        raise DeploymentsError(source, unknown[0], "unknown key (the top level has 'routes')")
    routes = _mapping(source, "routes", data.get("routes") or {})
    spec = DeploymentsSpec({name: _convert_route(source, str(name), value) for name, value in routes.items()})
    for name, route in spec.routes.items():
        check_route(source, name, route)
    return spec


def _mapping(source: str, path: str, value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise DeploymentsError(source, path, f"Expected `object`, got `{type(value).__name__}`")
    return value


def _convert_route(source: str, name: str, value: object) -> RouteSpec:
    """Route by route and target by target, so that errors name the keys (msgspec reports mapping keys as
    ``[...]``)."""
    at = f"routes.{name}"
    data = _mapping(source, at, value)
    targets = _mapping(source, f"{at}.targets", data.get("targets") or {})
    converted = {str(t): _convert(source, f"{at}.targets.{t}", v, TargetSpec) for t, v in targets.items()}
    route = _convert(source, at, {**data, "targets": {}}, RouteSpec)
    return msgspec.structs.replace(route, targets=converted)


def _convert(source: str, path: str, value: object, kind: type[_T]) -> _T:
    try:
        return msgspec.convert(value, kind)
    except msgspec.ValidationError as exc:
        raise _from_validation_error(source, path, str(exc)) from None


def _from_validation_error(source: str, base: str, message: str) -> DeploymentsError:
    problem, _, where = message.partition(" - at `")
    inner = where.rstrip("`").removeprefix("$")
    path = base + inner if inner.startswith("[") or not inner else f"{base}{inner}"
    problem = problem.replace("Object contains unknown field", "unknown key")
    problem = problem.replace("Object missing required field", "missing required key")
    if problem.startswith("Invalid enum value") and path.endswith(".balancing"):
        problem += f" (expected one of: {', '.join(get_args(Balancing))})"
    return DeploymentsError(source, path.replace("[...]", ""), problem)


def check_route(source: str, name: str, route: RouteSpec) -> None:
    """The rules msgspec's types cannot express: references between keys, ranges, exactly-one-of."""
    at = f"routes.{name}"

    def fail(path: str, problem: str) -> DeploymentsError:
        return DeploymentsError(source, f"{at}.{path}" if path else at, problem)

    if not _ROUTE_NAME.match(name):
        raise fail("", "a route name is 1-256 letters, digits or '._/@:-', starting with a letter or digit")
    if not route.targets:
        raise fail("targets", "a route needs at least one target")
    for target_name, target in route.targets.items():
        _check_target(fail, target_name, target)
    names = set(route.targets)
    if route.router is None and not any(t.weight > 0 for t in route.targets.values()):
        raise fail("targets", "at least one target needs a weight above 0")
    for index, fallback in enumerate(route.fallbacks):
        if fallback not in names:
            raise fail(f"fallbacks[{index}]", f"unknown target {fallback!r} (targets: {', '.join(sorted(names))})")
    if len(set(route.fallbacks)) != len(route.fallbacks):
        raise fail("fallbacks", "a target is listed twice")
    sticky = route.sticky
    if sticky is not None and (not _KEY_SOURCE.match(sticky.key) or sticky.key == "conversation"):
        raise fail("sticky.key", f"expected 'user' or 'header:NAME', got {sticky.key!r}")
    if not _KEY_SOURCE.match(route.affinity):
        raise fail("affinity", f"expected 'conversation', 'user' or 'header:NAME', got {route.affinity!r}")
    if route.shadow is not None:
        shadow = route.shadow
        if shadow.target not in names:
            raise fail("shadow.target", f"unknown target {shadow.target!r} (give the shadow a target with weight 0)")
        if not 0 < shadow.sample <= 1:
            raise fail("shadow.sample", f"must be in (0, 1], got {shadow.sample}")
        if shadow.timeout_s <= 0:
            raise fail("shadow.timeout_s", "must be above 0")
        if shadow.max_concurrent < 1:
            raise fail("shadow.max_concurrent", "must be at least 1")
    _check_retry(fail, route.retry)
    _check_breaker(fail, route.breaker)
    if route.router is not None:
        _check_router(fail, route.router, names)


def _check_target(fail: Fail, name: str, target: TargetSpec) -> None:
    at = f"targets.{name}"
    if not _TARGET_NAME.match(name):
        raise fail(at, "a target name is 1-64 letters, digits or '._-', starting with a letter or digit")
    if (target.model is None) == (target.url is None):
        raise fail(at, "give exactly one of 'model' (a registry reference) or 'url' (a remote endpoint)")
    if target.max_concurrency < 0:
        raise fail(f"{at}.max_concurrency", f"must be 0 (no limit) or more, got {target.max_concurrency}")
    if target.model is not None:
        try:
            parse_ref(target.model)
        except InvalidRequest as exc:
            raise fail(f"{at}.model", exc.message) from None
        if target.upstream_model is not None or target.api_key_env is not None:
            raise fail(at, "'upstream_model' and 'api_key_env' apply to remote 'url' targets only")
        if target.adapter is not None:
            try:
                parse_ref(target.adapter)
            except InvalidRequest as exc:
                raise fail(f"{at}.adapter", exc.message) from None
        if not 0 < target.adapter_scale <= 4:
            raise fail(f"{at}.adapter_scale", f"must be above 0 and at most 4, got {target.adapter_scale}")
        if target.replicas < 1 or target.replicas > 64:
            raise fail(f"{at}.replicas", f"must be between 1 and 64, got {target.replicas}")
    else:
        urls = target.urls()
        if not urls:
            raise fail(f"{at}.url", "needs at least one URL")
        for index, url in enumerate(urls):
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                where = f"{at}.url" if isinstance(target.url, str) else f"{at}.url[{index}]"
                raise fail(where, f"expected an http(s)://host[:port][/v1] URL, got {url!r}")
        if target.replicas != 1:
            raise fail(f"{at}.replicas", "a remote target has one replica per URL: list several URLs instead")
        if target.adapter is not None:
            raise fail(f"{at}.adapter", "an adapter is served on a registry 'model' (its base), not on a remote 'url'")
    if target.weight < 0:
        raise fail(f"{at}.weight", f"must be 0 or more, got {target.weight}")
    if target.region is not None and not target.region:
        raise fail(f"{at}.region", "must not be empty")


def _check_retry(fail: Fail, retry: RetrySpec) -> None:
    if not 1 <= retry.attempts <= 10:
        raise fail("retry.attempts", f"must be between 1 and 10, got {retry.attempts}")
    if retry.deadline_s <= 0:
        raise fail("retry.deadline_s", "must be above 0")
    if retry.hold_s < 0:
        raise fail("retry.hold_s", "must be 0 (no holding) or above")
    if retry.hold_max < 1:
        raise fail("retry.hold_max", f"must be at least 1, got {retry.hold_max}")
    if retry.first_byte_timeout_s is not None and retry.first_byte_timeout_s <= 0:
        raise fail("retry.first_byte_timeout_s", "must be above 0")
    for index, status in enumerate(retry.on_status):
        if not 500 <= status <= 599:
            raise fail(f"retry.on_status[{index}]", f"only 5xx statuses are retried, got {status}")


def _check_breaker(fail: Fail, breaker: BreakerSpec) -> None:
    if breaker.failures < 1:
        raise fail("breaker.failures", "must be at least 1")
    if breaker.cooldown_s <= 0 or breaker.max_cooldown_s < breaker.cooldown_s:
        raise fail("breaker", "cooldown_s must be above 0 and at most max_cooldown_s")


def _check_router(fail: Fail, router: RouterSpec, names: set[str]) -> None:
    from modelyard.routing.complexity import FEATURES

    for key in ("small", "large"):
        value = getattr(router, key)
        if value not in names:
            raise fail(f"router.{key}", f"unknown target {value!r}")
    if router.small == router.large:
        raise fail("router", "small and large must be different targets")
    if not 0 <= router.threshold <= 1:
        raise fail("router.threshold", f"must be between 0 and 1, got {router.threshold}")
    if router.long_prompt_tokens < 1 or router.deep_conversation_turns < 1:
        raise fail("router", "long_prompt_tokens and deep_conversation_turns must be at least 1")
    for feature, weight in router.weights.items():
        if feature not in FEATURES:
            raise fail(f"router.weights.{feature}", f"unknown feature (features: {', '.join(FEATURES)})")
        if weight < 0:
            raise fail(f"router.weights.{feature}", "must be 0 or more")
