"""The security layer the gateway calls: ``gate`` (who is calling, may they reach this endpoint) before routing,
``admit`` (model allow-list, request limits, input guardrails, rate limits and budgets) once the model is known,
and ``settle`` (reconcile tokens, release the concurrency slot, count spend) when the request is finished.

Owned by the runtime; started and stopped with it. Everything ``gate`` and ``admit`` read is in memory; the only
awaited I/O is the Redis limiter (bounded by its timeout) when ``MODELYARD_REDIS_URL`` is set.
"""

from __future__ import annotations

import asyncio
import logging
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import Counter, Histogram

from modelyard.api.asgi import Scope
from modelyard.errors import APIError
from modelyard.observability.request_record import RequestRecord
from modelyard.security.audit import AuditLog
from modelyard.security.authz import authenticate, authorize_route, authorize_scope, required_scope
from modelyard.security.budgets import SpendWriter
from modelyard.security.guardrails.config import GuardrailConfig, load_config, parse_config
from modelyard.security.guardrails.filters import InputGuard, OutputGuard
from modelyard.security.key_store import KeyStore
from modelyard.security.keys import KeyGrant, KeyHasher, load_pepper
from modelyard.security.ratelimit import (
    BACKEND_DOWN,
    CONCURRENCY,
    COST_BUDGET,
    REASONS,
    RPM,
    TOKEN_BUDGET,
    TPM,
    MemoryLimiter,
    Outcome,
    ratelimit_headers,
)
from modelyard.security.redis_limiter import RedisLimiter
from modelyard.security.request_limits import RouteLimits, check_request
from modelyard.security.snapshot import SnapshotPoller
from modelyard.store.database import Database

log = logging.getLogger("modelyard.security")

GRANT = "modelyard.grant"  # where ``gate`` leaves the caller's grant in the ASGI scope
AUTH_OFF_WARNING = "authentication is OFF (--auth off): every endpoint, admin included, is open to anyone"
HOLDBACK_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)


@dataclass(frozen=True)
class SecuritySettings:
    auth: bool = True
    region: str = ""  # this gateway's region, checked against keys' allowed regions
    metrics_public: bool = True
    redis_url: str | None = None
    redis_prefix: str = "modelyard"
    fail_mode: str = "open"  # when Redis is unreachable: "open" (serve unlimited) or "closed" (503)
    redis_timeout_s: float = 0.25
    guardrails_file: Path | None = None
    key_poll_s: float = 0.25
    context_length: int | None = None  # tokens one request may use (engine context / parallel slots)


@dataclass
class Admission:
    grant: KeyGrant | None
    estimate: int
    request_id: str
    payload_changed: bool = False
    output: OutputGuard | None = None
    limited: bool = False
    acquired_at: float = field(default_factory=time.time)


class SecurityLayer:
    def __init__(self, database: Database, settings: SecuritySettings, registry: Any) -> None:
        self.settings = settings
        hasher = KeyHasher(load_pepper())
        self.keys = KeyStore(database, hasher)
        self.audit = AuditLog(database)
        self._file_config = load_config(settings.guardrails_file) if settings.guardrails_file else GuardrailConfig()
        self.guardrails = self._file_config
        self.guardrails_source = str(settings.guardrails_file) if settings.guardrails_file else "none"
        self.poller = SnapshotPoller(self.keys, hasher, settings.key_poll_s, on_guardrails=self._stored_guardrails)
        if settings.redis_url:
            self.limiter: MemoryLimiter | RedisLimiter = RedisLimiter(
                settings.redis_url, settings.redis_prefix, settings.fail_mode, registry, settings.redis_timeout_s
            )
        else:
            self.limiter = MemoryLimiter()
        self.spend = SpendWriter(self.keys, self.limiter)
        self._auth_failures = Counter(
            "modelyard_auth_failures",
            "Requests refused by authentication or authorization, by error code.",
            ("code",),
            registry=registry,
        )
        self._limited = Counter(
            "modelyard_ratelimit_rejections",
            "Requests refused by a per-key limit or budget, by which one.",
            ("limit",),
            registry=registry,
        )
        self._hits = Counter(
            "modelyard_guardrail_hits",
            "Guardrail findings, by direction (input/output), guardrail and action.",
            ("direction", "guardrail", "action"),
            registry=registry,
        )
        self._holdback = Histogram(
            "modelyard_guardrail_holdback_seconds",
            "Delay the output filter's hold-back window added to released stream text.",
            buckets=HOLDBACK_BUCKETS,
            registry=registry,
        )
        self._pending_releases: set[asyncio.Task[None]] = set()

    # -- lifecycle -------------------------------------------------------------------------------------------------

    async def start(self, actor: str) -> None:
        if not self.settings.auth:
            log.warning("%s; start without --auth off to require API keys", AUTH_OFF_WARNING)
        else:
            secret = await asyncio.to_thread(self.keys.ensure_bootstrap, actor)
            if secret:
                banner = (
                    "\n" + "=" * 78 + "\nBootstrap admin API key (shown once, store it now; stored only as a hash):\n"
                    f"    {secret}\nCreate more keys with `modelyard keys create` or POST /admin/keys.\n" + "=" * 78
                )
                sys.stderr.write(banner + "\n")
                sys.stderr.flush()
                log.warning("created the bootstrap admin key (printed above, once)")
        await self.poller.start()
        await self.limiter.start()
        await self.spend.start()

    async def stop(self) -> None:
        if self._pending_releases:
            await asyncio.gather(*self._pending_releases, return_exceptions=True)
        await self.poller.stop()
        await self.spend.stop()
        await self.limiter.stop()

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "auth": "on" if self.settings.auth else "off",
            "keys": len(self.poller.snapshot),
            "key_revision": self.poller.snapshot.revision,
            "rate_limiter": self.limiter.backend,
            "guardrails": self.guardrails_source,
        }
        if not self.settings.auth:
            info["warning"] = AUTH_OFF_WARNING
        if self.poller.error:
            info["key_snapshot_error"] = self.poller.error
        last_error = getattr(self.limiter, "last_error", None)
        if last_error:
            info["rate_limiter_error"] = f"{last_error} (failing {self.settings.fail_mode})"
        return info

    def _stored_guardrails(self, stored: dict[str, Any] | None) -> None:
        if stored is None:
            self.guardrails = self._file_config
            self.guardrails_source = str(self.settings.guardrails_file) if self.settings.guardrails_file else "none"
            return
        try:
            self.guardrails = parse_config(stored, "stored guardrails (PUT /admin/guardrails)")
            self.guardrails_source = "admin-api"
        except ValueError as exc:  # validated on write; only a hand edit of the table gets here
            log.error("ignoring stored guardrail config: %s", exc)

    def set_file_config(self, config: GuardrailConfig) -> None:
        self._file_config = config

    # -- the request path ------------------------------------------------------------------------------------------

    def gate(self, scope: Scope) -> APIError | None:
        """Authenticate and check the endpoint's scope; on success leave the grant in ``scope``."""
        if not self.settings.auth:
            return None
        path = scope["path"]
        needed = required_scope(scope["method"], path, self.settings.metrics_public)
        if needed is None:
            return None
        key = presented_key(scope)
        grant = self.poller.lookup(key) if key else None
        decision = authenticate(grant, key is not None, time.time())
        if not decision.allowed or grant is None:
            self._auth_failures.labels(decision.code).inc()
            return APIError(decision.status, decision.message, code=decision.code)
        decision = authorize_scope(grant, needed)
        if not decision.allowed:
            self._auth_failures.labels(decision.code).inc()
            return APIError(decision.status, decision.message, type="permission_denied", code=decision.code)
        scope[GRANT] = grant
        if path.startswith("/admin/"):
            _set_actor(scope, grant)
        return None

    async def admit(
        self,
        scope: Scope,
        payload: dict[str, Any],
        route: str,
        model: str,
        request_id: str,
        response_headers: list[tuple[bytes, bytes]],
        region: str | None = None,
    ) -> Admission:
        """``region``: where the chosen target runs (a deployments-file region tag); else this gateway's."""
        grant: KeyGrant | None = scope.get(GRANT)
        if grant is not None:
            decision = authorize_route(grant, route, model, region or self.settings.region)
            if not decision.allowed:
                self._auth_failures.labels(decision.code).inc()
                raise APIError(403, decision.message, type="permission_denied", code=decision.code, param="model")
        policy = self.guardrails.policy(route, model)
        estimate = check_request(
            payload, policy.route_limits if policy else RouteLimits(), self.settings.context_length, route
        )
        changed = False
        if policy is not None and policy.guards_input:
            changed = InputGuard(policy, self._hit).apply(payload)
        admission = Admission(grant, estimate, request_id, changed)
        if grant is not None and (grant.limits.rate_limited or grant.limits.budgeted):
            outcome = await self.limiter.acquire(grant.id, grant.limits, estimate, request_id, admission.acquired_at)
            headers = ratelimit_headers(grant.limits, outcome)
            if not outcome.allowed:
                raise self._refused(grant, outcome, estimate, headers)
            admission.limited = True
            response_headers.extend(headers)
        if policy is not None and policy.guards_output:
            admission.output = OutputGuard(policy, self._hit, self._holdback.observe)
        return admission

    async def settle(self, admission: Admission, record: RequestRecord) -> None:
        grant = admission.grant
        if grant is None:
            return
        if record.prompt_tokens or record.completion_tokens:
            tokens = record.prompt_tokens + record.completion_tokens
        elif record.status == 499:  # the client left mid-answer: the engine did work we cannot count exactly
            tokens = admission.estimate
        else:
            tokens = 0
        self.spend.add(grant.id, tokens, record.cost_usd)
        if admission.limited:
            try:
                await self.limiter.release(
                    grant.id,
                    grant.limits,
                    admission.request_id,
                    admission.estimate,
                    tokens,
                    record.cost_usd,
                    time.time(),
                )
            except Exception:
                log.exception("rate limiter: release failed for %s", grant.id)

    def _hit(self, direction: str, guardrail: str, action: str) -> None:
        self._hits.labels(direction, guardrail, action).inc()

    def _refused(
        self, grant: KeyGrant, outcome: Outcome, estimate: int, headers: list[tuple[bytes, bytes]]
    ) -> APIError:
        reason = REASONS[outcome.reason]
        self._limited.labels(reason.replace(" ", "_")).inc()
        extra = {k.decode(): v.decode() for k, v in headers}
        if outcome.reason == BACKEND_DOWN:
            return APIError(
                503,
                "The rate limiter (Redis) is unavailable and this gateway fails closed; retry shortly.",
                type="service_unavailable_error",
                code="rate_limiter_unavailable",
                headers={"retry-after": "1"},
            )
        retry = outcome.retry_after_s
        if outcome.reason in (TOKEN_BUDGET, COST_BUDGET):
            limits = grant.limits
            adjective = "daily" if limits.budget_period == "day" else "monthly"
            if outcome.reason == TOKEN_BUDGET:
                what = f"{adjective} token budget ({limits.token_budget} tokens)"
            else:
                what = f"{adjective} cost budget (${limits.cost_budget_usd:g})"
            return APIError(
                429,
                f"API key '{grant.name}' has exhausted its {what}; it resets at the start of the next "
                f"{limits.budget_period} (UTC), in {math.ceil(retry)} s.",
                type="insufficient_quota",
                code="budget_exceeded",
                param=f"{'token' if outcome.reason == TOKEN_BUDGET else 'cost'}_budget",
                headers={"retry-after": str(math.ceil(retry)), **extra},
            )
        if not math.isfinite(retry):
            return APIError(
                429,
                f"This request needs about {estimate} tokens, more than API key '{grant.name}' may use in a minute "
                f"({grant.limits.tpm}); lower max_tokens or the prompt.",
                type="tokens",
                code="rate_limit_exceeded",
                headers=extra,
            )
        return APIError(
            429,
            f"Rate limit reached for API key '{grant.name}': {reason} (limit "
            f"{grant.limits.tpm if outcome.reason == TPM else _limit_of(grant, outcome.reason)}). "
            f"Retry in {max(1, math.ceil(retry))} s.",
            type="tokens" if outcome.reason == TPM else "requests",
            code="rate_limit_exceeded",
            headers={"retry-after": str(max(1, math.ceil(retry))), **extra},
        )


def _limit_of(grant: KeyGrant, reason: int) -> int:
    return {RPM: grant.limits.rpm, CONCURRENCY: grant.limits.concurrency}.get(reason, 0)


def presented_key(scope: Scope) -> bytes | None:
    """``Authorization: Bearer KEY`` (what OpenAI SDKs send) or ``x-api-key: KEY``."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            if value[:7].lower() == b"bearer ":
                return value[7:].strip() or None
            return value.strip() or None
        if name == b"x-api-key":
            return value.strip() or None
    return None


def _set_actor(scope: Scope, grant: KeyGrant) -> None:
    """The admin API records ``x-modelyard-actor``; with keys, the key is who acts (a stated name is kept beside)."""
    stated = None
    headers = []
    for name, value in scope["headers"]:
        if name == b"x-modelyard-actor":
            stated = value.decode(errors="replace")[:100]
        else:
            headers.append((name, value))
    actor = grant.actor if not stated else f"{grant.actor} as {stated}"
    headers.append((b"x-modelyard-actor", actor.encode()))
    scope["headers"] = headers
