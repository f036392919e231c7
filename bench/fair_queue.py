"""Scenario — fair queueing on a saturated engine: a light key keeps its latency while a heavy key sends ten times
as much as the engine can take.

The engine is the mock upstream (fixed latency per answer) behind a target with ``max_concurrency`` slots, so the
gateway's slot gate (``gateway/slots.py``) is what decides who goes next, exactly as it does in front of a
``llama-server`` with ``--parallel`` slots. Both keys send open-loop (a fixed schedule, latency measured from the
scheduled send time, so a queue cannot hide itself). Phases:

1. unloaded: the light key alone → its p50;
2. fair: the heavy key at ``--heavy-rate`` (about 10x the light rate and above what the slots can serve) plus the
   light key → the light key's p50 (target: within 1.5x of unloaded), the heavy key's answers and 429s;
3. one key for both (what a FIFO in front of the engine gives the same traffic) → the light requests' p50.

The gateway runs in-process (the product's ``Runtime`` and ASGI app; keys required, two keys without limits) with
the load generator in the same event loop; the mock runs in its own process.

    .venv/bin/python -m bench.fair_queue --duration 10
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from modelyard.deploy.static import StaticUpstreams
from modelyard.gateway.settings import GatewaySettings
from modelyard.observability.metrics import GatewayMetrics
from modelyard.observability.routing_metrics import RoutingMetrics
from modelyard.observability.settings import ObservabilitySettings
from modelyard.roles.runtime import Runtime
from modelyard.roles.stores import open_database
from modelyard.routing.config import parse_deployments
from modelyard.security.key_store import NewKey
from modelyard.security.keys import INFERENCE, PEPPER_ENV
from modelyard.security.layer import SecurityLayer
from modelyard.security.settings import SecuritySettings

BODY = {"model": "m", "messages": [{"role": "user", "content": "Say something."}], "max_tokens": 8}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _mock(latency_ms: float) -> Any:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.mock_upstream", "--port", str(port), "--latency-ms", str(latency_ms)]
    )
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.kill()
        proc.wait()


@contextlib.asynccontextmanager
async def _gateway(url: str, slots: int, queue_max: int) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    os.environ.setdefault(PEPPER_ENV, "bench-pepper")
    metrics = GatewayMetrics()
    database = open_database(f"sqlite:///{Path(tempfile.mkdtemp()) / 'security.db'}")
    security = SecurityLayer(database, SecuritySettings(auth=True), metrics.registry)
    keys = {name: f"my-bench-{name}-key" for name in ("light", "heavy")}
    for name, secret in keys.items():
        security.keys.create(NewKey(name, scopes=(INFERENCE,)), "bench", secret=secret)
    spec = parse_deployments(
        f'routes:\n  m:\n    targets:\n      only: {{url: "{url}", max_concurrency: {slots}}}\n', "bench"
    )
    runtime = Runtime(
        StaticUpstreams(metrics, None, spec),
        metrics,
        RoutingMetrics(metrics.registry),
        GatewaySettings(queue_max=queue_max),
        ObservabilitySettings(log_requests=False, request_log=False),
        request_log=None,
        security=security,
    )
    await runtime.start()
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    transport = httpx.ASGITransport(app=runtime.app)
    try:
        async with httpx.AsyncClient(
            transport=transport, base_url="http://gateway", timeout=120, limits=limits
        ) as client:
            yield client, keys
    finally:
        await runtime.stop()


async def _open_loop(client: httpx.AsyncClient, key: str, rate: float, duration: float) -> dict[str, Any]:
    """``rate`` requests/s for ``duration`` s on a fixed schedule; latency from each scheduled send time."""
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    start = loop.time() + 0.05
    headers = {"authorization": f"Bearer {key}"}

    async def one(at: float) -> None:
        await asyncio.sleep(max(0.0, at - loop.time()))
        answer = await client.post("/v1/chat/completions", json=BODY, headers=headers)
        statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1
        if answer.status_code == 200:
            latencies.append(loop.time() - at)

    count = int(rate * duration)
    await asyncio.gather(*(one(start + i / rate) for i in range(count)))
    return {
        "sent": count,
        "statuses": statuses,
        "p50_ms": round(statistics.median(latencies) * 1000, 1) if latencies else None,
        "p90_ms": round(statistics.quantiles(latencies, n=10)[-1] * 1000, 1) if len(latencies) > 10 else None,
    }


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    with _mock(args.latency_ms) as url:
        async with _gateway(url, args.slots, args.queue_max) as (client, keys):
            await _open_loop(client, keys["light"], args.light_rate, 1.0)  # warm-up
            unloaded = await _open_loop(client, keys["light"], args.light_rate, args.duration)
            light, heavy = await asyncio.gather(
                _open_loop(client, keys["light"], args.light_rate, args.duration),
                _open_loop(client, keys["heavy"], args.heavy_rate, args.duration),
            )
            await asyncio.sleep(1.0)
            shared_light, shared_heavy = await asyncio.gather(
                _open_loop(client, keys["heavy"], args.light_rate, args.duration),
                _open_loop(client, keys["heavy"], args.heavy_rate, args.duration),
            )
    ratio = light["p50_ms"] / unloaded["p50_ms"] if light["p50_ms"] and unloaded["p50_ms"] else None
    capacity = args.slots / (args.latency_ms / 1000)
    return {
        "setup": {
            "slots": args.slots,
            "latency_ms": args.latency_ms,
            "capacity_rps": capacity,
            "light_rps": args.light_rate,
            "heavy_rps": args.heavy_rate,
            "duration_s": args.duration,
            "queue_max": args.queue_max,
        },
        "unloaded_light": unloaded,
        "fair_light": light,
        "fair_heavy": heavy,
        "one_key_light_share": shared_light,
        "one_key_heavy_share": shared_heavy,
        "light_p50_ratio": round(ratio, 2) if ratio else None,
        "target_ratio": 1.5,
        "met": ratio is not None and ratio <= 1.5,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per phase")
    parser.add_argument("--slots", type=int, default=4, help="the engine's concurrency limit")
    parser.add_argument("--latency-ms", type=float, default=100.0, help="the mock engine's time per answer")
    parser.add_argument("--light-rate", type=float, default=4.0, help="the light key's requests/s")
    parser.add_argument("--heavy-rate", type=float, default=40.0, help="the heavy key's requests/s (10x light)")
    parser.add_argument("--queue-max", type=int, default=64, help="--queue-max of the gateway")
    args = parser.parse_args(argv)

    print(json.dumps(asyncio.run(measure(args)), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
