"""The security concept as the rest of the gateway uses it: the door, admission and settlement.

- ``authenticate`` (the door, for every endpoint): who is calling, and may their key reach an endpoint that needs
  this scope. The app calls it once per request, with the scope the endpoint table declares.
- ``admit`` (the pipeline's security stage, once the model and target are known): model and region allow-lists,
  request limits, input guardrails, rate limits and budgets.
- ``settle`` (the stage's exit, when the request is finished): reconcile tokens, release the concurrency slot,
  count spend.

Owned by the runtime; started and stopped with it. Everything ``authenticate`` and ``admit`` read is in memory;
the only awaited I/O is the Redis limiter (bounded by its timeout) when ``--redis-url`` is set.
"""

from __future__ import annotations

import asyncio
import logging
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter, Histogram

from modelyard.audit.log import AuditLog
from modelyard.errors import (
    APIError,
    budget_exceeded,
    invalid_api_key,
    missing_api_key,
    rate_limited,
    rate_limiter_unavailable,
    request_over_tpm,
)
from modelyard.security.authz import authenticate, authorize_route, authorize_scope
from modelyard.security.budgets import SpendWriter
from modelyard.security.guardrails.config import GuardrailConfig, load_config, parse_config
from modelyard.security.guardrails.file_watch import GuardrailsFileWatcher
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
from modelyard.security.request_limits import NO_LIMITS, apply_route_cap, check_request, clamp_to_context
from modelyard.security.settings import SecuritySettings
from modelyard.security.snapshot import SnapshotPoller
from modelyard.store.database import Database

log = logging.getLogger("modelyard.security")

AUTH_OFF_WARNING = "authentication is OFF (--auth off): every endpoint, admin included, is open to anyone"
HOLDBACK_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)


@dataclass
class Admission:
    grant: KeyGrant | None
    estimate: int
    request_id: str
    payload_changed: bool = False
    output: OutputGuard | None = None
    limited: bool = False
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)  # x-ratelimit-* for the answer
    acquired_at: float = field(default_factory=time.time)


class SecurityLayer:
    def __init__(
        self, database: Database, settings: SecuritySettings, registry: Any, context_length: int | None = None
    ) -> None:
        """``context_length``: tokens one request may use (the engine's context over its slots), or None."""
        self.context_length = context_length
        self.settings = settings
        hasher = KeyHasher(load_pepper())
        self.keys = KeyStore(database, hasher)
        self.audit = AuditLog(database)
        self._file_config = load_config(settings.guardrails_file) if settings.guardrails_file else GuardrailConfig()
        self.guardrails = self._file_config
        self.guardrails_source = str(settings.guardrails_file) if settings.guardrails_file else "none"
        self.guardrails_watch = (
            GuardrailsFileWatcher(settings.guardrails_file, self.set_file_config, registry)
            if settings.guardrails_file
            else None
        )
        self.poller = SnapshotPoller(self.keys, hasher, settings.key_poll_s, on_guardrails=self._stored_guardrails)
        if settings.redis_url:
            self.limiter: MemoryLimiter | RedisLimiter = RedisLimiter(
                settings.redis_url,
                settings.redis_prefix,
                settings.ratelimit_fail_mode,
                registry,
                settings.redis_timeout_s,
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
        if self.guardrails_watch is not None:
            await self.guardrails_watch.start()
        await self.limiter.start()
        await self.spend.start()

    async def stop(self) -> None:
        if self._pending_releases:
            await asyncio.gather(*self._pending_releases, return_exceptions=True)
        await self.poller.stop()
        if self.guardrails_watch is not None:
            await self.guardrails_watch.stop()
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
        if self.guardrails_watch is not None and self.guardrails_watch.last_error:
            info["guardrails_file_error"] = f"{self.guardrails_watch.last_error} (enforcing the previous file)"
        last_error = getattr(self.limiter, "last_error", None)
        if last_error:
            info["rate_limiter_error"] = f"{last_error} (failing {self.settings.ratelimit_fail_mode})"
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
        """A reloaded guardrails file: enforced at once, unless a configuration put through the admin API is in
        force (that one wins until ``DELETE /admin/guardrails`` returns to the file)."""
        self._file_config = config
        if self.guardrails_source != "admin-api":
            self.guardrails = config

    # -- the door: who is calling, and may they reach this endpoint -------------------------------------------------

    def authenticate(self, headers: list[tuple[bytes, bytes]], needed: str | None) -> KeyGrant | None:
        """The caller's grant for an endpoint that needs the scope ``needed`` (None: a public endpoint, or auth
        off); raises the 401/403 that says what is missing."""
        if not self.settings.auth or needed is None:
            return None
        try:
            key = presented_key(headers)
        except APIError:
            self._auth_failures.labels("invalid_api_key").inc()
            raise
        grant = self.poller.lookup(key) if key else None
        refusal = authenticate(grant, key is not None, time.time())
        if refusal is not None or grant is None:
            self._auth_failures.labels("invalid_api_key").inc()
            raise refusal or missing_api_key()
        refusal = authorize_scope(grant, needed)
        if refusal is not None:
            self._auth_failures.labels(refusal.kind).inc()
            raise refusal
        return grant

    # -- admission (the pipeline's security stage) -----------------------------------------------------------------

    async def admit(
        self,
        grant: KeyGrant | None,
        payload: dict[str, Any],
        route: str,
        model: str,
        request_id: str,
        region: str | None = None,
    ) -> Admission:
        """Model allow-list, request limits, input guardrails, rate limits and budgets, in that order.
        ``region``: where the chosen target runs (a deployments-file region tag); else this gateway's."""
        if grant is not None:
            refusal = authorize_route(grant, route, model, region or self.settings.region)
            if refusal is not None:
                self._auth_failures.labels(refusal.kind).inc()
                raise refusal
        policy = self.guardrails.policy(route, model)
        limits = policy.route_limits if policy else NO_LIMITS
        estimate = check_request(payload, limits, self.context_length, route)
        changed = apply_route_cap(payload, limits)
        if self.context_length:
            changed = clamp_to_context(payload, self.context_length) or changed
        if policy is not None and policy.guards_input:
            changed = InputGuard(policy, self._hit).apply(payload) or changed
        admission = Admission(grant, estimate, request_id, changed)
        if grant is not None and (grant.limits.rate_limited or grant.limits.budgeted):
            outcome = await self.limiter.acquire(grant.id, grant.limits, estimate, request_id, admission.acquired_at)
            headers = ratelimit_headers(grant.limits, outcome)
            if not outcome.allowed:
                raise self._refused(grant, outcome, estimate, headers)
            admission.limited = True
            admission.headers = headers
        if policy is not None and policy.guards_output:
            admission.output = OutputGuard(policy, self._hit, self._holdback.observe)
        return admission

    async def settle(self, admission: Admission, tokens_used: int, cost_usd: float, status: int) -> None:
        """Reconcile what the request really used: spend, and the limiter's estimate against the real tokens."""
        grant = admission.grant
        if grant is None:
            return
        if tokens_used:
            tokens = tokens_used
        elif status == 499:  # the client left mid-answer: the engine did work we cannot count exactly
            tokens = admission.estimate
        else:
            tokens = 0
        self.spend.add(grant.id, tokens, cost_usd)
        if admission.limited:
            try:
                await self.limiter.release(
                    grant.id, grant.limits, admission.request_id, admission.estimate, tokens, cost_usd, time.time()
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
            return rate_limiter_unavailable()
        retry = outcome.retry_after_s
        limits = grant.limits
        if outcome.reason in (TOKEN_BUDGET, COST_BUDGET):
            adjective = "daily" if limits.budget_period == "day" else "monthly"
            if outcome.reason == TOKEN_BUDGET:
                what, param = f"{adjective} token budget ({limits.token_budget} tokens)", "token_budget"
            else:
                what, param = f"{adjective} cost budget (${limits.cost_budget_usd:g})", "cost_budget"
            return budget_exceeded(grant.name, what, limits.budget_period, retry, param, extra)
        if not math.isfinite(retry):
            return request_over_tpm(grant.name, estimate, limits.tpm, extra)
        limit = {TPM: limits.tpm, RPM: limits.rpm, CONCURRENCY: limits.concurrency}.get(outcome.reason, 0)
        return rate_limited(grant.name, reason, limit, retry, outcome.reason == TPM, extra)


def presented_key(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """``Authorization: Bearer KEY`` (what OpenAI SDKs send) or ``x-api-key: KEY``. An empty header is as good as
    none (it must not hide a key in the other one); an ``Authorization`` of another scheme is not a key: refused
    with a 401 that says so, unless an ``x-api-key`` is there too (a proxy's own credentials may travel with it)."""
    bearer = api_key = None
    other_scheme = False
    for name, value in headers:
        if name == b"authorization":
            value = value.strip()
            if value[:7].lower() == b"bearer ":
                bearer = value[7:].strip() or bearer
            elif value:
                other_scheme = True
        elif name == b"x-api-key":
            api_key = value.strip() or api_key
    if bearer is not None:
        return bearer
    if api_key is None and other_scheme:
        raise invalid_api_key("The Authorization header must be 'Bearer my-…' (or send the key as 'x-api-key').")
    return api_key
