"""What the stream output filter's hold-back window costs on the real engine: the same greedy 128-token stream on
a route with an output blocklist (hold-back window) and on one without, alternated, from the client's side (time
to the first text, gaps between text pieces, total), plus the gateway's own ``modelyard_guardrail_holdback_seconds``.

    .venv/bin/python -m bench.guardrail_holdback --reps 5
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

MODEL = "gemma-3-270m"


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stream(url: str, model: str, tokens: int) -> tuple[float, list[float], float]:
    body = {"model": model, "prompt": "Once upon a time", "max_tokens": tokens, "temperature": 0, "ignore_eos": True,
            "stream": True}  # fmt: skip
    started = time.perf_counter()
    arrivals: list[float] = []
    with httpx.stream("POST", url + "/v1/completions", json=body, timeout=300) as answer:
        for line in answer.iter_lines():
            if line.startswith("data: {") and '"text":"' in line and '"text":""' not in line:
                arrivals.append(time.perf_counter() - started)
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    return arrivals[0], gaps, time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--hold-back-chars", type=int, default=32)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="holdback-"))
    config = work / "guardrails.yaml"
    guarded = f"{MODEL}:1"
    output = {"blocklist": {"phrases": ["zebra-never-said"]}, "hold_back_chars": args.hold_back_chars}
    config.write_text(json.dumps({"routes": {guarded: {"output": output}}}))
    port = _port()
    env = {**os.environ, "MODELYARD_DATA_DIR": str(work), "MODELYARD_AUTH": "off"}
    command = [sys.executable, "-m", "modelyard", "serve", "--port", str(port), "--parallel", "2", "--ctx-size",
               "4096", "--guardrails", str(config), "--log-level", "warning"]  # fmt: skip
    with (work / "gateway.log").open("wb") as log:
        gateway = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        _stream(url, MODEL, 8)  # warm-up
        results: dict[str, list[tuple[float, list[float], float]]] = {"guarded": [], "plain": []}
        for rep in range(args.reps):
            for name in ("guarded", "plain") if rep % 2 == 0 else ("plain", "guarded"):
                results[name].append(_stream(url, guarded if name == "guarded" else MODEL, args.tokens))
        for name, runs in results.items():
            ttft = statistics.median(r[0] for r in runs) * 1000
            gaps = sorted(g for r in runs for g in r[1])
            total = statistics.median(r[2] for r in runs) * 1000
            print(f"{name:8s} first text p50 {ttft:7.1f} ms | gap p50 {gaps[len(gaps) // 2] * 1000:6.1f} ms "
                  f"p99 {gaps[int(len(gaps) * 0.99)] * 1000:6.1f} ms | total p50 {total:7.1f} ms")  # fmt: skip
        metrics = httpx.get(url + "/metrics", timeout=10).text
        values = {line.split(" ")[0]: float(line.split(" ")[1]) for line in metrics.splitlines()
                  if line.startswith("modelyard_guardrail_holdback_seconds_")}  # fmt: skip
        total_s = values.get("modelyard_guardrail_holdback_seconds_sum", 0.0)
        count = values.get("modelyard_guardrail_holdback_seconds_count", 0.0)
        if count:
            print(f"gateway: mean hold-back delay {total_s / count * 1000:.1f} ms over {count:.0f} released pieces")
    finally:
        gateway.terminate()
        gateway.wait(60)


if __name__ == "__main__":
    main()
