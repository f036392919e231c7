"""Per-key rate limits and budgets: the pure token-bucket math, the outcome a request gets, and the in-memory
backend for a single replica (the Redis backend in :mod:`modelyard.security.redis_limiter` runs the same math in a
Lua script, so every replica shares one bucket).

Requests and tokens per minute are token buckets holding at most one minute's allowance and refilling
continuously (``limit / 60`` per second): a burst of ``limit`` is allowed, then the steady rate. Tokens are
charged before the call with an estimate (prompt characters / 4 + ``max_tokens``) and reconciled with the
engine's reported usage afterwards (the difference is refunded or charged, so a bucket may go into debt).
Concurrency is a count of leased slots. Budgets compare the period's spend so far with the key's budget.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import NamedTuple

from modelyard.security.keys import KeyLimits

# Denial reasons, shared with the Lua script (numbers) and the error messages (names).
OK, RPM, TPM, CONCURRENCY, TOKEN_BUDGET, COST_BUDGET, BACKEND_DOWN = range(7)
REASONS = {
    RPM: "requests per minute",
    TPM: "tokens per minute",
    CONCURRENCY: "concurrent requests",
    TOKEN_BUDGET: "token budget",
    COST_BUDGET: "cost budget",
    BACKEND_DOWN: "rate limiter unavailable",
}
LEASE_S = 600.0  # a concurrency slot held by a crashed replica frees itself after this


@dataclass(slots=True)
class Bucket:
    tokens: float
    updated: float


def refill(bucket: Bucket | None, now: float, capacity: float) -> Bucket:
    """The bucket as of ``now``: refilled in place (it is one key's own state, and a new object per request and
    bucket showed in profiles), or a full new one."""
    if bucket is None:
        return Bucket(capacity, now)
    elapsed = now - bucket.updated
    if elapsed > 0:
        bucket.tokens = min(capacity, bucket.tokens + elapsed * (capacity / 60.0))
    bucket.updated = now
    return bucket


def take(bucket: Bucket, cost: float, capacity: float) -> tuple[bool, float]:
    """(allowed, seconds until it would be). A cost above the capacity can never pass: infinite wait."""
    if cost <= bucket.tokens:
        return True, 0.0
    if cost > capacity:
        return False, math.inf
    return False, (cost - bucket.tokens) / (capacity / 60.0)


def seconds_to_full(bucket: Bucket, capacity: float) -> float:
    return max(0.0, (capacity - bucket.tokens) / (capacity / 60.0)) if capacity else 0.0


def budget_period(period: str, now: float | None = None) -> str:
    at = datetime.fromtimestamp(time.time() if now is None else now, UTC)
    return at.strftime("d%Y-%m-%d") if period == "day" else at.strftime("m%Y-%m")


class PeriodClock:
    """Budget period names for "now", recomputed once per UTC minute: a ``strftime`` per request showed in profiles,
    and day and month boundaries fall on minute boundaries."""

    def __init__(self) -> None:
        self._minute = -1
        self._names: dict[str, str] = {}

    def name(self, period: str, now: float) -> str:
        minute = int(now // 60)
        if minute != self._minute:
            self._minute = minute
            self._names = {"day": budget_period("day", now), "month": budget_period("month", now)}
        return self._names[period]


def seconds_to_period_end(period: str, now: float) -> float:
    at = datetime.fromtimestamp(now, UTC)
    if period == "day":
        end = datetime(at.year, at.month, at.day, tzinfo=UTC).timestamp() + 86400
    else:
        end = datetime(at.year + (at.month == 12), at.month % 12 + 1, 1, tzinfo=UTC).timestamp()
    return max(1.0, end - now)


class Outcome(NamedTuple):
    """What the limiter decided for one request, with the numbers for the ``x-ratelimit-*`` headers (a named
    tuple: immutable like a frozen dataclass, at a fifth of the cost to build, once per request)."""

    allowed: bool
    reason: int = OK
    retry_after_s: float = 0.0
    rpm_remaining: int = 0
    tpm_remaining: int = 0
    rpm_reset_s: float = 0.0
    tpm_reset_s: float = 0.0
    spent_tokens: int = 0
    spent_cost_usd: float = 0.0


def format_reset(seconds: float) -> bytes:
    return (b"%.3fs" % seconds) if math.isfinite(seconds) else b"inf"


def ratelimit_headers(limits: KeyLimits, outcome: Outcome) -> list[tuple[bytes, bytes]]:
    """OpenAI's header names; values in requests/tokens, resets as durations like ``1.500s``."""
    headers: list[tuple[bytes, bytes]] = []
    if limits.rpm:
        headers.append((b"x-ratelimit-limit-requests", b"%d" % limits.rpm))
        headers.append((b"x-ratelimit-remaining-requests", b"%d" % max(0, outcome.rpm_remaining)))
        headers.append((b"x-ratelimit-reset-requests", format_reset(outcome.rpm_reset_s)))
    if limits.tpm:
        headers.append((b"x-ratelimit-limit-tokens", b"%d" % limits.tpm))
        headers.append((b"x-ratelimit-remaining-tokens", b"%d" % max(0, outcome.tpm_remaining)))
        headers.append((b"x-ratelimit-reset-tokens", format_reset(outcome.tpm_reset_s)))
    return headers


@dataclass
class _KeyState:
    rpm: Bucket | None = None
    tpm: Bucket | None = None
    leases: dict[str, float] = field(default_factory=dict)  # request id -> lease expiry


@dataclass
class Spend:
    tokens: int = 0
    cost_usd: float = 0.0


class MemoryLimiter:
    """One replica's limits. Single-threaded by construction (the event loop), so no locks."""

    backend = "memory"

    def __init__(self) -> None:
        self._keys: dict[str, _KeyState] = {}
        self.spend: dict[tuple[str, str], Spend] = {}
        self._periods = PeriodClock()

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def acquire(self, key_id: str, limits: KeyLimits, estimate: int, request_id: str, now: float) -> Outcome:
        state = self._keys.get(key_id)
        if state is None:  # not setdefault: that would build a _KeyState (and its dict) on every request
            state = self._keys[key_id] = _KeyState()
        if limits.budgeted:
            spent = self.spend.get((key_id, self._periods.name(limits.budget_period, now))) or Spend()
            if limits.token_budget and spent.tokens >= limits.token_budget:
                wait = seconds_to_period_end(limits.budget_period, now)
                return Outcome(False, TOKEN_BUDGET, wait, spent_tokens=spent.tokens)
            if limits.cost_budget_usd and spent.cost_usd >= limits.cost_budget_usd:
                wait = seconds_to_period_end(limits.budget_period, now)
                return Outcome(False, COST_BUDGET, wait, spent_cost_usd=spent.cost_usd)
        if limits.concurrency:
            state.leases = {r: t for r, t in state.leases.items() if t > now}
            if len(state.leases) >= limits.concurrency:
                return Outcome(False, CONCURRENCY, 1.0)
        rpm = refill(state.rpm, now, limits.rpm) if limits.rpm else None
        tpm = refill(state.tpm, now, limits.tpm) if limits.tpm else None
        if rpm is not None:
            allowed, wait = take(rpm, 1, limits.rpm)
            if not allowed:
                return _denied(RPM, wait, rpm, tpm, limits)
        if tpm is not None:
            allowed, wait = take(tpm, estimate, limits.tpm)
            if not allowed:
                return _denied(TPM, wait, rpm, tpm, limits)
        if rpm is not None:
            rpm.tokens -= 1
            state.rpm = rpm
        if tpm is not None:
            tpm.tokens -= estimate
            state.tpm = tpm
        if limits.concurrency:
            state.leases[request_id] = now + LEASE_S
        return _granted(rpm, tpm, limits)

    async def release(
        self, key_id: str, limits: KeyLimits, request_id: str, estimate: int, tokens: int, cost_usd: float, now: float
    ) -> None:
        state = self._keys.get(key_id)
        if state is not None:
            state.leases.pop(request_id, None)
            if limits.tpm and state.tpm is not None:
                bucket = refill(state.tpm, now, limits.tpm)
                bucket.tokens = min(float(limits.tpm), bucket.tokens - (tokens - estimate))
                state.tpm = bucket
        if limits.budgeted:
            spent = self.spend.setdefault((key_id, self._periods.name(limits.budget_period, now)), Spend())
            spent.tokens += tokens
            spent.cost_usd += cost_usd

    def merge_stored_spend(self, rows: list[dict[str, object]], unflushed: dict[tuple[str, str], Spend]) -> None:
        """Fold in what other replicas spent (the database's totals plus what this one has not written yet)."""
        for row in rows:
            key = (str(row["key_id"]), str(row["period"]))
            extra = unflushed.get(key) or Spend()
            stored_tokens = int(row["tokens"]) + extra.tokens  # type: ignore[call-overload]
            stored_cost = float(row["cost_usd"]) + extra.cost_usd  # type: ignore[arg-type]
            spent = self.spend.setdefault(key, Spend())
            spent.tokens, spent.cost_usd = max(spent.tokens, stored_tokens), max(spent.cost_usd, stored_cost)


def _denied(reason: int, wait: float, rpm: Bucket | None, tpm: Bucket | None, limits: KeyLimits) -> Outcome:
    granted = _granted(rpm, tpm, limits)
    return Outcome(
        False, reason, wait, granted.rpm_remaining, granted.tpm_remaining, granted.rpm_reset_s, granted.tpm_reset_s
    )


def _granted(rpm: Bucket | None, tpm: Bucket | None, limits: KeyLimits) -> Outcome:
    return Outcome(
        True,
        OK,
        0.0,
        int(rpm.tokens) if rpm else 0,
        int(tpm.tokens) if tpm else 0,
        seconds_to_full(rpm, limits.rpm) if rpm else 0.0,
        seconds_to_full(tpm, limits.tpm) if tpm else 0.0,
    )
