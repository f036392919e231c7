"""Python load generators: open-loop fixed-rate requests, and closed-loop concurrent streams.

Open loop (fixed rate): request *i* is due at ``t0 + i / rate`` whether or not earlier answers came back, and its
latency is measured from that due time, not from when it was actually sent. A closed-loop tool slows its sending
down when the server stalls and so hides the stall ("coordinated omission"); measuring from the schedule charges
every stall to every request that should have been sent during it. How late the generator itself dispatched is
reported too (``dispatch_lag``), so a starved generator is visible rather than blamed on the server.

Streams (closed loop): ``concurrency`` workers each send one streaming request after another; every text-carrying
SSE event is timestamped on arrival, giving time to first token and the gaps between tokens.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field

from bench.httpclient import ConnectionPool, Response


@dataclass
class OpenLoopResult:
    rate: float
    duration_s: float
    sent: int = 0
    ok: int = 0
    errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)  # from the scheduled time, successful requests
    dispatch_lag_ms: list[float] = field(default_factory=list)  # how late each request was written
    connections: int = 0
    elapsed_s: float = 0.0

    @property
    def achieved_rps(self) -> float:
        return self.ok / self.elapsed_s if self.elapsed_s else 0.0


async def open_loop(
    host: str, port: int, raw: bytes, rate: float, duration_s: float, max_in_flight: int = 2048
) -> OpenLoopResult:
    """Send ``raw`` at ``rate`` requests/s for ``duration_s``; requests beyond ``max_in_flight`` count as errors."""
    pool = ConnectionPool(host, port)
    result = OpenLoopResult(rate=rate, duration_s=duration_s)
    total = int(rate * duration_s)
    in_flight: set[asyncio.Task[None]] = set()

    async def fire(due: float) -> None:
        result.dispatch_lag_ms.append((time.perf_counter() - due) * 1000)
        try:
            response = await pool.request(raw)
        except (OSError, ConnectionError):
            result.errors += 1
            return
        if response.status == 200:
            result.ok += 1
            result.latencies_ms.append((response.finished - due) * 1000)
        else:
            result.errors += 1

    start = time.perf_counter() + 0.01
    for index in range(total):
        due = start + index / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if len(in_flight) >= max_in_flight:
            result.errors += 1
            continue
        task = asyncio.ensure_future(fire(due))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
        result.sent += 1
    if in_flight:
        await asyncio.wait(in_flight)
    result.elapsed_s = time.perf_counter() - start
    result.connections = pool.opened
    pool.close()
    return result


@dataclass
class StreamResult:
    concurrency: int
    requests: int = 0
    errors: int = 0
    ttft_ms: list[float] = field(default_factory=list)
    itl_ms: list[float] = field(default_factory=list)  # gaps between consecutive text events
    tokens: int = 0  # text events received (one per token for llama.cpp and the mock)
    usage_tokens: int = 0  # completion_tokens reported by usage events, where sent
    elapsed_s: float = 0.0
    error_samples: list[str] = field(default_factory=list)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.elapsed_s if self.elapsed_s else 0.0


async def concurrent_streams(
    host: str,
    port: int,
    raws: list[bytes],
    concurrency: int,
    duration_s: float | None = None,
    requests_per_worker: int | None = None,
    stagger_s: float = 0.0,
) -> StreamResult:
    """``concurrency`` workers stream requests (cycling through ``raws``) until the duration or count is reached.

    Worker *k* starts ``k * stagger_s / concurrency`` late, so streams do not all begin in the same instant.
    Only requests that finished are counted; tokens/s is over the wall time from the first send to the last answer.
    """
    if duration_s is None and requests_per_worker is None:
        raise ValueError("give a duration or a number of requests per worker")
    pool = ConnectionPool(host, port)
    result = StreamResult(concurrency=concurrency)
    start = time.perf_counter()
    deadline = start + duration_s if duration_s is not None else float("inf")
    last_end = start

    def record(response: Response) -> None:
        nonlocal last_end
        last_end = max(last_end, response.finished)
        if response.status != 200 or not response.token_times:
            result.errors += 1
            if len(result.error_samples) < 3:
                result.error_samples.append(f"HTTP {response.status}: {response.body[:200]!r}")
            return
        result.requests += 1
        times = response.token_times
        result.ttft_ms.append((times[0] - response.started) * 1000)
        result.itl_ms.extend((b - a) * 1000 for a, b in itertools.pairwise(times))
        result.tokens += len(times)
        result.usage_tokens += response.usage_tokens or 0

    async def worker(index: int) -> None:
        await asyncio.sleep(index * stagger_s / concurrency)
        sent = 0
        while time.perf_counter() < deadline and (requests_per_worker is None or sent < requests_per_worker):
            raw = raws[(index + sent) % len(raws)]
            sent += 1
            try:
                record(await pool.request(raw, stream=True))
            except (OSError, ConnectionError) as exc:
                result.errors += 1
                if len(result.error_samples) < 3:
                    result.error_samples.append(str(exc))

    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    result.elapsed_s = last_end - start
    pool.close()
    return result
