"""Rate limits and budgets shared by every replica, in Redis: one Lua script per request decides atomically.

The script runs the same token-bucket math as :mod:`modelyard.security.ratelimit` (check every limit first,
then charge all of them, so a request refused for tokens does not use up a request slot), leases a concurrency
slot in a sorted set (expired leases of crashed replicas fall out), and reads the period's spend counters for the
budgets. Time comes from the caller (milliseconds), the same clock on one machine; across machines NTP skew of a
few ms only shifts refills by that much.

Every call has a hard timeout. When Redis is unreachable or slow the outcome follows ``fail_mode``: ``open``
(serve the request unlimited) or ``closed`` (refuse with 503); either way it is logged and counted, never a hang.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import redis.asyncio as aioredis
from prometheus_client import Counter

from modelyard.security.keys import KeyLimits
from modelyard.security.ratelimit import BACKEND_DOWN, LEASE_S, OK, Outcome, PeriodClock, seconds_to_period_end

log = logging.getLogger("modelyard.security")

_ACQUIRE = """
local now = tonumber(ARGV[1])
local rpm, tpm, conc = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local est, rid, lease = tonumber(ARGV[5]), ARGV[6], tonumber(ARGV[7])
local tbudget, cbudget = tonumber(ARGV[8]), tonumber(ARGV[9])
local spent_t = tonumber(redis.call('GET', KEYS[4]) or '0')
local spent_c = tonumber(redis.call('GET', KEYS[5]) or '0')
if tbudget > 0 and spent_t >= tbudget then return {0, 4, 0, 0, 0, 0, 0, spent_t, spent_c} end
if cbudget > 0 and spent_c >= cbudget then return {0, 5, 0, 0, 0, 0, 0, spent_t, spent_c} end
if conc > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  if redis.call('ZCARD', KEYS[3]) >= conc then return {0, 3, 1000, 0, 0, 0, 0, spent_t, spent_c} end
end
local function fill(key, cap)
  local s = redis.call('HMGET', key, 't', 'u')
  local t, u = tonumber(s[1]), tonumber(s[2])
  if t == nil then return cap end
  return math.min(cap, t + math.max(0, now - u) * cap / 60000.0)
end
local rt, tt = 0, 0
if rpm > 0 then rt = fill(KEYS[1], rpm) end
if tpm > 0 then tt = fill(KEYS[2], tpm) end
local function wait(cost, have, cap)
  if cost > cap then return -1 end
  return math.ceil((cost - have) * 60000.0 / cap)
end
local function reset(have, cap)
  if cap <= 0 then return 0 end
  return math.ceil((cap - have) * 60000.0 / cap)
end
if rpm > 0 and rt < 1 then
  return {0, 1, wait(1, rt, rpm), math.floor(rt), math.floor(tt), reset(rt, rpm), reset(tt, tpm), spent_t, spent_c}
end
if tpm > 0 and tt < est then
  return {0, 2, wait(est, tt, tpm), math.floor(rt), math.floor(tt), reset(rt, rpm), reset(tt, tpm), spent_t, spent_c}
end
if rpm > 0 then
  rt = rt - 1
  redis.call('HSET', KEYS[1], 't', tostring(rt), 'u', tostring(now))
  redis.call('PEXPIRE', KEYS[1], 120000)
end
if tpm > 0 then
  tt = tt - est
  redis.call('HSET', KEYS[2], 't', tostring(tt), 'u', tostring(now))
  redis.call('PEXPIRE', KEYS[2], 120000)
end
if conc > 0 then
  redis.call('ZADD', KEYS[3], now + lease, rid)
  redis.call('PEXPIRE', KEYS[3], lease)
end
return {1, 0, 0, math.floor(rt), math.floor(tt), reset(rt, rpm), reset(tt, tpm), spent_t, spent_c}
"""

_RELEASE = """
local now, tpm, rid = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local delta, tokens, micro, ttl = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
redis.call('ZREM', KEYS[2], rid)
if tpm > 0 then
  local s = redis.call('HMGET', KEYS[1], 't', 'u')
  local t, u = tonumber(s[1]), tonumber(s[2])
  if t ~= nil then
    t = math.min(tpm, math.min(tpm, t + math.max(0, now - u) * tpm / 60000.0) - delta)
    redis.call('HSET', KEYS[1], 't', tostring(t), 'u', tostring(now))
    redis.call('PEXPIRE', KEYS[1], 120000)
  end
end
if tokens > 0 then redis.call('INCRBY', KEYS[3], tokens) redis.call('EXPIRE', KEYS[3], ttl) end
if micro > 0 then redis.call('INCRBY', KEYS[4], micro) redis.call('EXPIRE', KEYS[4], ttl) end
return 1
"""

_SPEND_TTL_S = 40 * 86400  # a month and some: the database keeps the durable totals


class RedisLimiter:
    backend = "redis"

    def __init__(
        self,
        url: str,
        prefix: str,
        fail_mode: str,
        registry: Any,
        timeout_s: float = 0.25,
    ) -> None:
        self._client = aioredis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, health_check_interval=30
        )
        self._prefix = prefix
        self.fail_mode = fail_mode
        self._timeout_s = timeout_s
        self._acquire = self._client.register_script(_ACQUIRE)
        self._release = self._client.register_script(_RELEASE)
        self._last_logged = 0.0
        self.errors = Counter(
            "modelyard_ratelimit_backend_errors",
            "Redis limiter calls that failed or timed out, by what was done about it (fail_open / fail_closed).",
            ("outcome",),
            registry=registry,
        )
        self.last_error: str | None = None
        self._periods = PeriodClock()

    async def start(self) -> None:
        try:
            await asyncio.wait_for(self._client.ping(), self._timeout_s * 4)
        except Exception as exc:  # start anyway: the fail mode decides what requests get
            self._failed("ping at start", exc)

    async def stop(self) -> None:
        await self._client.aclose()

    def _keys(self, key_id: str, period: str) -> list[str]:
        base = f"{self._prefix}:{{{key_id}}}"
        return [
            f"{base}:rpm",
            f"{base}:tpm",
            f"{base}:conc",
            f"{base}:spent:{period}:tokens",
            f"{base}:spent:{period}:microusd",
        ]

    async def acquire(self, key_id: str, limits: KeyLimits, estimate: int, request_id: str, now: float) -> Outcome:
        args: list[int | str] = [
            int(now * 1000),
            limits.rpm,
            limits.tpm,
            limits.concurrency,
            estimate,
            request_id,
            int(LEASE_S * 1000),
            limits.token_budget,
            int(limits.cost_budget_usd * 1_000_000),
        ]
        try:
            result = await asyncio.wait_for(
                self._acquire(keys=self._keys(key_id, self._periods.name(limits.budget_period, now)), args=args),
                self._timeout_s,
            )
        except Exception as exc:
            self._failed("acquire", exc)
            if self.fail_mode == "open":
                return Outcome(True, OK)
            return Outcome(False, BACKEND_DOWN, 1.0)
        allowed, reason, wait_ms, rpm_left, tpm_left, rpm_reset, tpm_reset, spent_t, spent_c = (int(x) for x in result)
        if reason in (4, 5):
            wait_s = seconds_to_period_end(limits.budget_period, now)
        else:
            wait_s = float("inf") if wait_ms < 0 else wait_ms / 1000
        self.last_error = None
        return Outcome(
            bool(allowed),
            reason,
            wait_s,
            rpm_left,
            tpm_left,
            rpm_reset / 1000,
            tpm_reset / 1000,
            spent_t,
            spent_c / 1_000_000,
        )

    async def release(
        self, key_id: str, limits: KeyLimits, request_id: str, estimate: int, tokens: int, cost_usd: float, now: float
    ) -> None:
        keys = self._keys(key_id, self._periods.name(limits.budget_period, now))
        args: list[int | str] = [
            int(now * 1000),
            limits.tpm,
            request_id,
            tokens - estimate,
            tokens,
            round(cost_usd * 1_000_000),
            _SPEND_TTL_S,
        ]
        try:
            await asyncio.wait_for(self._release(keys=[keys[1], keys[2], keys[3], keys[4]], args=args), self._timeout_s)
        except Exception as exc:
            self._failed("release", exc)

    async def seed_spend(self, rows: list[dict[str, Any]]) -> None:
        """Give Redis the database's totals for counters it does not have (a fresh or flushed Redis)."""
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for row in rows:
                    keys = self._keys(str(row["key_id"]), str(row["period"]))
                    pipe.set(keys[3], int(row["tokens"]), nx=True, ex=_SPEND_TTL_S)
                    pipe.set(keys[4], round(float(row["cost_usd"]) * 1_000_000), nx=True, ex=_SPEND_TTL_S)
                await asyncio.wait_for(pipe.execute(), self._timeout_s * 4)
        except Exception as exc:
            self._failed("seed spend", exc)

    def _failed(self, what: str, exc: BaseException) -> None:
        self.errors.labels("fail_open" if self.fail_mode == "open" else "fail_closed").inc()
        self.last_error = f"redis {what} failed: {type(exc).__name__}: {exc}"
        now = time.monotonic()
        if now - self._last_logged > 5:  # one line per 5 s, not one per request, during an outage
            self._last_logged = now
            log.warning("rate limiter: %s (failing %s)", self.last_error, self.fail_mode)
