"""Soak: a mixed load against a real ``modelyard serve`` (one llama-server) for a while, with an engine restart in
the middle, watching for leaks.

The traffic, from ``--concurrency`` workers: whole chat answers, streams, streams the client abandons after the
first event, and bad requests (broken JSON, unknown model, invalid fields). Halfway through, the engine is killed
with SIGKILL (the supervisor restarts it; held requests wait for it). Every ``--sample-every`` seconds the
gateway's RSS, open file descriptors and ``modelyard_asyncio_tasks`` are read. Verdicts, after the warm-up
(``--warmup`` share of the run):

- RSS and fds flat within ±5 %: the mean of the last third of samples against the first third;
- asyncio tasks back to where they were before the load once it stops: after the load, ``modelyard_asyncio_tasks``
  is read every second until it holds still for ``--settle-quiet`` seconds (at most ``--settle-max``), because
  connection tasks of the last requests end a moment after their answers (keep-alive, abandoned streams' clean-up);
  reading it at once counts those as leaks;
- the engine's ``/slots`` all idle once the load stops (no generation left running for a client that left);
- no server error other than those the restart could explain (counted separately).

    .venv/bin/python -m bench.soak --minutes 30       # the full run
    .venv/bin/python -m bench.soak --minutes 4        # a short one
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

MODEL = "gemma-3-270m"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Gateway:
    def __init__(self, data_dir: Path, parallel: int) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = (data_dir / "gateway.log").open("wb")
        env = {**os.environ, "MODELYARD_DATA_DIR": str(data_dir), "MODELYARD_AUTH": "off"}
        argv = [sys.executable, "-m", "modelyard", "serve", "--port", str(self.port), "--parallel", str(parallel)]
        self.proc = subprocess.Popen(
            [*argv, "--ctx-size", str(1024 * parallel)], stdout=self.log, stderr=subprocess.STDOUT, env=env
        )

    def wait_ready(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/ready", timeout=2).status_code == 200:
                    return
            if self.proc.poll() is not None:
                raise RuntimeError("gateway exited")
            time.sleep(0.5)
        raise TimeoutError("gateway not ready")

    def engine(self) -> dict[str, Any]:
        return httpx.get(self.url + "/ready", timeout=5).json()["engines"][0]

    def engine_url(self) -> str:
        cmdline = psutil.Process(self.engine()["pid"]).cmdline()
        return f"http://127.0.0.1:{cmdline[cmdline.index('--port') + 1]}"

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _tasks(metrics: str) -> float:
    for line in metrics.splitlines():
        if line.startswith("modelyard_asyncio_tasks "):
            return float(line.split()[1])
    return -1.0


def settled_tasks(read: Any, quiet: float, bound: float, step: float = 1.0) -> tuple[float, float, bool, list[float]]:
    """Read the task count every ``step`` s until it has not changed for ``quiet`` s, or ``bound`` s have passed.

    Returns the last count, the seconds it took, whether it held still and the counts read; a count that never
    holds still within the bound is reported as it was at the bound (the caller says so), not waited on for ever.
    """
    started = time.monotonic()
    seen: list[float] = [read()]
    still_since = started
    while time.monotonic() - started < bound:
        time.sleep(step)
        now = read()
        if now != seen[-1]:
            still_since = time.monotonic()
        seen.append(now)
        if time.monotonic() - still_since >= quiet:
            return seen[-1], round(time.monotonic() - started, 1), True, seen
    return seen[-1], round(time.monotonic() - started, 1), False, seen


async def _worker(client: httpx.AsyncClient, stop: float, counts: dict[str, int], rng: random.Random) -> None:
    chat = {"model": MODEL, "messages": [{"role": "user", "content": "Tell me about the sea."}], "max_tokens": 8}
    while time.monotonic() < stop:
        draw = rng.random()
        try:
            if draw < 0.45:
                answer = await client.post("/v1/chat/completions", json=chat)
                kind = "json"
            elif draw < 0.7:
                async with client.stream("POST", "/v1/chat/completions", json={**chat, "stream": True}) as answer:
                    async for _ in answer.aiter_raw():
                        pass
                kind = "stream"
            elif draw < 0.85:
                body = {**chat, "stream": True, "max_tokens": 64}
                async with client.stream("POST", "/v1/chat/completions", json=body) as answer:
                    async for _ in answer.aiter_raw():
                        break  # the client leaves after the first piece
                kind = "abandoned"
            else:
                bad = rng.choice([b"{", b'{"model": "nope", "messages": [{"role": "user", "content": "x"}]}',
                                  b'{"model": "gemma-3-270m", "messages": [], "max_tokens": 0}'])  # fmt: skip
                answer = await client.post(
                    "/v1/chat/completions", content=bad, headers={"content-type": "application/json"}
                )
                kind = "bad"
            key = f"{kind} {answer.status_code}"
        except httpx.HTTPError as exc:
            key = f"transport {type(exc).__name__}"
        counts[key] = counts.get(key, 0) + 1


async def _drive(url: str, seconds: float, concurrency: int, counts: dict[str, int]) -> None:
    stop = time.monotonic() + seconds
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        await asyncio.gather(*(_worker(client, stop, counts, random.Random(i)) for i in range(concurrency)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--parallel", type=int, default=2, help="the engine's slots")
    parser.add_argument("--sample-every", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=0.2, help="share of the run before samples count")
    parser.add_argument("--settle-quiet", type=float, default=10.0, help="s the task count must hold still")
    parser.add_argument("--settle-max", type=float, default=120.0, help="at most this long waiting for it")
    args = parser.parse_args(argv)
    seconds = args.minutes * 60
    data_dir = Path(tempfile.mkdtemp(prefix="soak-"))
    gateway = Gateway(data_dir, args.parallel)
    counts: dict[str, int] = {}
    samples: list[dict[str, float]] = []
    try:
        gateway.wait_ready()
        process = psutil.Process(gateway.proc.pid)

        def read_tasks() -> float:
            return _tasks(httpx.get(gateway.url + "/metrics", timeout=10).text)

        tasks_idle_before = read_tasks()
        first_engine = gateway.engine()["pid"]
        load = threading.Thread(target=lambda: asyncio.run(_drive(gateway.url, seconds, args.concurrency, counts)))
        started = time.monotonic()
        load.start()
        killed = False
        while load.is_alive():
            elapsed = time.monotonic() - started
            if not killed and elapsed >= seconds / 2:
                os.kill(gateway.engine()["pid"], signal.SIGKILL)
                killed = True
            with contextlib.suppress(httpx.HTTPError):
                metrics = httpx.get(gateway.url + "/metrics", timeout=10).text
                samples.append({"t": round(elapsed, 1), "rss_mb": process.memory_info().rss / 2**20,
                                "fds": process.num_fds(), "tasks": _tasks(metrics),
                                "load1": os.getloadavg()[0]})  # fmt: skip
            load.join(args.sample_every)
        tasks_end, settle_s, settled, settle_series = settled_tasks(read_tasks, args.settle_quiet, args.settle_max)
        slots = httpx.get(gateway.engine_url() + "/slots", timeout=10).json()
        rss_idle_end, fds_idle_end = process.memory_info().rss / 2**20, process.num_fds()
        restarted = gateway.engine()["pid"] != first_engine
    finally:
        gateway.stop()
    counted = [s for s in samples if s["t"] >= seconds * args.warmup]
    third = max(1, len(counted) // 3)

    def drift(name: str) -> float:
        early = statistics.mean(s[name] for s in counted[:third])
        late = statistics.mean(s[name] for s in counted[-third:])
        return round((late - early) / early * 100, 2) if early else 0.0

    busy = [s.get("id") for s in slots if s.get("is_processing")]
    result = {
        "minutes": args.minutes,
        "concurrency": args.concurrency,
        "requests": dict(sorted(counts.items())),
        "engine_restarted": restarted,
        "samples": len(samples),
        "rss_mb_first_last": [round(counted[0]["rss_mb"], 1), round(counted[-1]["rss_mb"], 1)] if counted else None,
        "rss_drift_pct": drift("rss_mb") if counted else None,
        "fds_first_last": [counted[0]["fds"], counted[-1]["fds"]] if counted else None,
        "fds_drift_pct": drift("fds") if counted else None,
        "rss_mb_idle_end": round(rss_idle_end, 1),
        "fds_idle_end": fds_idle_end,
        "tasks_idle_before_load": tasks_idle_before,
        "tasks_under_load_min_max": [min(s["tasks"] for s in counted), max(s["tasks"] for s in counted)]
        if counted
        else None,
        "tasks_idle_after_load": tasks_end,
        "tasks_settled": settled,
        "tasks_settle_seconds": settle_s,
        "tasks_settle_series": sorted(set(settle_series), key=settle_series.index),
        "load_average_1m_min_mean_max": [
            round(min(s["load1"] for s in samples), 1),
            round(statistics.mean(s["load1"] for s in samples), 1),
            round(max(s["load1"] for s in samples), 1),
        ]
        if samples
        else None,
        "slots_busy_at_end": busy,
        "server_errors": {k: v for k, v in counts.items() if k.split()[-1].startswith("5")},
    }
    result["flat"] = bool(counted) and abs(result["rss_drift_pct"]) <= 5 and abs(result["fds_drift_pct"]) <= 5
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
