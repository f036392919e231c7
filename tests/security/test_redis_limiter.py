"""The Redis limiter against the real Redis on 127.0.0.1:6379: two limiter instances (two replicas) hammering one
key stay exact, and an unreachable Redis fails open or closed at once instead of hanging."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
import redis
from prometheus_client import CollectorRegistry

from modelyard.security.keys import KeyLimits
from modelyard.security.ratelimit import BACKEND_DOWN, CONCURRENCY, RPM
from modelyard.security.redis_limiter import RedisLimiter

from security.conftest import REDIS_URL


@pytest.fixture
def prefix() -> str:
    prefix = f"modelyard-test-{uuid.uuid4().hex[:8]}"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)
    client.close()


async def _replicas(prefix: str, n: int = 2) -> list[RedisLimiter]:
    # A generous timeout: this test is about atomicity, and the shared 2-core machine can be slow.
    limiters = [RedisLimiter(REDIS_URL, prefix, "closed", CollectorRegistry(), timeout_s=2.0) for _ in range(n)]
    for limiter in limiters:
        await limiter.start()
    return limiters


def test_two_limiters_sharing_redis_allow_exactly_the_limit_under_concurrency(prefix: str) -> None:
    async def run() -> list[bool]:
        a, b = await _replicas(prefix)
        limits = KeyLimits(rpm=37)
        now = time.time()
        outcomes = await asyncio.gather(
            *((a if i % 2 else b).acquire("key_x", limits, 1, f"r{i}", now) for i in range(120))
        )
        await a.stop()
        await b.stop()
        return outcomes

    outcomes = asyncio.run(run())
    assert sum(o.allowed for o in outcomes) == 37
    assert {o.reason for o in outcomes if not o.allowed} == {RPM}


def test_concurrency_leases_are_shared_and_released(prefix: str) -> None:
    async def run() -> tuple[int, bool]:
        a, b = await _replicas(prefix)
        limits = KeyLimits(concurrency=3)
        now = time.time()
        outcomes = await asyncio.gather(
            *((a if i % 2 else b).acquire("key_c", limits, 1, f"r{i}", now) for i in range(10))
        )
        granted = [f"r{i}" for i, o in enumerate(outcomes) if o.allowed]
        assert all(o.reason == CONCURRENCY for o in outcomes if not o.allowed)
        await a.release("key_c", limits, granted[0], 1, 1, 0.0, now)
        again = await b.acquire("key_c", limits, 1, "late", now)
        await a.stop()
        await b.stop()
        return len(granted), again.allowed

    assert asyncio.run(run()) == (3, True)


@pytest.mark.parametrize(("mode", "allowed"), [("open", True), ("closed", False)])
def test_unreachable_redis_fails_open_or_closed_fast_and_counts_it(mode: str, allowed: bool) -> None:
    async def run() -> tuple[bool, int, float, float]:
        registry = CollectorRegistry()
        limiter = RedisLimiter("redis://127.0.0.1:1/0", "x", mode, registry, timeout_s=0.2)
        await limiter.start()
        started = time.monotonic()
        outcome = await limiter.acquire("k", KeyLimits(rpm=1), 1, "r", time.time())
        elapsed = time.monotonic() - started
        await limiter.stop()
        errors = registry.get_sample_value("modelyard_ratelimit_backend_errors_total",
                                           {"outcome": f"fail_{mode}"})  # fmt: skip
        return outcome.allowed, outcome.reason, elapsed, errors or 0

    outcome_allowed, reason, elapsed, errors = asyncio.run(run())
    assert outcome_allowed is allowed
    assert reason == (0 if allowed else BACKEND_DOWN)
    assert elapsed < 1.0
    assert errors >= 2  # the ping at start and the acquire
