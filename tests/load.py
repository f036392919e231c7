"""A small concurrent client for routing tests: counts where requests went from the response headers."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class LoadResult:
    targets: collections.Counter[str] = field(default_factory=collections.Counter)
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    attempts: collections.Counter[int] = field(default_factory=collections.Counter)
    latencies: list[float] = field(default_factory=list)
    by_key: dict[str, set[str]] = field(default_factory=lambda: collections.defaultdict(set))
    errors: list[str] = field(default_factory=list)  # transport errors (no HTTP answer at all)
    error_bodies: list[str] = field(default_factory=list)  # the first few non-200 answers

    @property
    def failed(self) -> int:
        return sum(n for status, n in self.statuses.items() if status != 200) + len(self.errors)


def chat(model: str, content: str = "Say hi.", max_tokens: int = 4, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": max_tokens, **extra}


async def drive(
    url: str,
    count: int,
    body: Callable[[int], dict[str, Any]],
    headers: Callable[[int], dict[str, str]] = lambda i: {},
    concurrency: int = 32,
    key: Callable[[int], str] | None = None,
    request_timeout_s: float = 120.0,
) -> LoadResult:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=request_timeout_s, limits=limits) as client:
        return await drive_client(client, count, body, headers, concurrency, key)


async def drive_client(
    client: httpx.AsyncClient,
    count: int,
    body: Callable[[int], dict[str, Any]],
    headers: Callable[[int], dict[str, str]] = lambda i: {},
    concurrency: int = 32,
    key: Callable[[int], str] | None = None,
) -> LoadResult:
    """``count`` chat requests from ``concurrency`` workers over ``client`` (a socket or an in-process app)."""
    result = LoadResult()
    queue = iter(range(count))

    async def worker() -> None:
        for i in queue:
            loop = asyncio.get_running_loop()
            started = loop.time()
            try:
                response = await client.post("/v1/chat/completions", json=body(i), headers=headers(i))
            except httpx.HTTPError as exc:
                result.errors.append(f"{type(exc).__name__}: {exc}")
                continue
            result.latencies.append(loop.time() - started)
            result.statuses[response.status_code] += 1
            target = response.headers.get("x-modelyard-target", "?")
            result.targets[target] += 1
            result.attempts[int(response.headers.get("x-modelyard-attempts", "0"))] += 1
            if response.status_code != 200 and len(result.error_bodies) < 5:
                result.error_bodies.append(response.text[:300])
            if key is not None:
                result.by_key[key(i)].add(target)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return result


def run(*args: Any, **kwargs: Any) -> LoadResult:
    return asyncio.run(drive(*args, **kwargs))


def apply(gateway_url: str, text: str) -> httpx.Response:
    """PUT a whole deployments file to a running gateway (returns once it is applied or refused)."""
    return httpx.put(f"{gateway_url}/admin/deployments", content=text, timeout=300)
