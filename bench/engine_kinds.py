"""The two engine kinds on the same weights, side by side: llama.cpp on the default GGUF and vLLM on its HF-format
conversion, behind one ``modelyard serve`` — cold start, time to first token and decode tokens/s.

The run is what an operator does: ``modelyard serve`` starts on the default GGUF (llama.cpp), ``modelyard models
convert gemma-3-270m:1 --to hf --alias staging`` registers the HF version while it runs (the alias puts it on a
route), and the reconciler launches vLLM for it.
Cold starts are the engines' own (launch → first healthy ``/health``, as ``/ready`` reports them). Then each
version gets the same streamed completions (fixed prompts, ``max_tokens`` tokens each with the end of text
suppressed by ``ignore_eos``, temperature 0) at concurrency 1 and at the configured slot count, one version at a
time; the order alternates between repetitions. llama.cpp is also measured before vLLM exists ("alone"): an idle
vLLM CPU engine keeps cores busy (its worker threads spin), which a small machine feels, and the run reports how
many cores each engine uses while it serves nothing.

Run with the product's interpreter (vLLM installed by ``make setup-vllm``):

    .venv/bin/python -m bench.engine_kinds --tokens 64 --requests 4 --reps 2
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench import report
from bench.procs import PRODUCT_PYTHON, Service, free_port, services
from bench.stats import percentile

GGUF = "gemma-3-270m:1"
HF = "gemma-3-270m:2"
PROMPTS = [
    "The history of the sea is",
    "In a small village at the edge of the forest, there lived",
    "The most important idea in computer science is",
    "Here is a recipe for a simple tomato soup:",
]


async def one_stream(client: httpx.AsyncClient, model: str, prompt: str, tokens: int) -> tuple[float, float, int]:
    """One streamed completion: (time to first text in s, total s, completion tokens)."""
    body = {"model": model, "prompt": prompt, "max_tokens": tokens, "temperature": 0, "ignore_eos": True,
            "stream": True, "stream_options": {"include_usage": True}}  # fmt: skip
    started = time.perf_counter()
    first = 0.0
    used = 0
    async with client.stream("POST", "/v1/completions", json=body) as answer:
        answer.raise_for_status()
        async for line in answer.aiter_lines():
            if not line.startswith("data: {"):
                continue
            event = json.loads(line[6:])
            if not first and any(c.get("text") for c in event.get("choices") or []):
                first = time.perf_counter() - started
            if event.get("usage"):
                used = int(event["usage"]["completion_tokens"])
    return first, time.perf_counter() - started, used


async def load(url: str, model: str, concurrency: int, requests: int, tokens: int) -> dict[str, float]:
    """``concurrency`` workers, each sending ``requests`` streams one after another."""
    async with httpx.AsyncClient(base_url=url, timeout=1800) as client:

        async def worker(n: int) -> list[tuple[float, float, int]]:
            return [await one_stream(client, model, PROMPTS[(n + i) % len(PROMPTS)], tokens) for i in range(requests)]

        started = time.perf_counter()
        results = [r for rs in await asyncio.gather(*(worker(n) for n in range(concurrency))) for r in rs]
        wall = time.perf_counter() - started
    ttfts = [r[0] * 1000 for r in results]
    total_tokens = sum(r[2] for r in results)
    per_stream = [r[2] / max(r[1] - r[0], 1e-9) for r in results]  # decode speed after the first token
    return {
        "tokens_per_s": total_tokens / wall,
        "ttft_p50_ms": percentile(ttfts, 50),
        "stream_tokens_per_s_p50": percentile(per_stream, 50),
        "tokens": total_tokens,
        "wall_s": wall,
    }


def ready_engine(client: httpx.Client, key: str) -> dict[str, Any] | None:
    engines = client.get("/ready").json().get("engines", [])
    return next((e for e in engines if e["name"] == key), None)


def wait_engine(client: httpx.Client, key: str, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        engine = ready_engine(client, key)
        if engine and engine.get("ready"):
            return engine
        if engine and engine.get("state") == "failed":
            raise RuntimeError(f"engine {key} failed: {engine}")
        time.sleep(1)
    raise TimeoutError(f"engine {key} not ready after {timeout_s:.0f} s")


def tree_cpu_s(pid: int) -> float:
    """CPU seconds used so far by a process and its children (vLLM runs an API server and an engine core)."""
    processes = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    total = 0.0
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = process.cpu_times()
            total += times.user + times.system
    return total


def idle_cores(pid: int, seconds: float) -> float:
    """Cores an engine keeps busy while it serves nothing (spinning worker threads take them from the other)."""
    before = tree_cpu_s(pid)
    time.sleep(seconds)
    return (tree_cpu_s(pid) - before) / seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=64, help="completion tokens of each request")
    parser.add_argument("--requests", type=int, default=4, help="requests per worker at each concurrency")
    parser.add_argument("--slots", type=int, default=4, help="llama.cpp --parallel and vLLM --max-num-seqs")
    parser.add_argument("--reps", type=int, default=2, help="repetitions (engine order alternates)")
    parser.add_argument("--eager", action="store_true", help="vLLM --enforce-eager (no torch.compile warm-up)")
    args = parser.parse_args(argv)
    data = Path(tempfile.mkdtemp(prefix="bench-engine-kinds-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [str(PRODUCT_PYTHON), "-m", "modelyard", "serve", "--port", str(port), "--log-level", "warning",
               "--parallel", str(args.slots), "--ctx-size", str(1024 * args.slots),
               "--vllm-max-model-len", "1024", "--vllm-max-num-seqs", str(args.slots), "--vllm-cpu-kv-cache", "1",
               "--vllm-enforce-eager", "on" if args.eager else "off", "--vllm-ready-timeout", "1800"]  # fmt: skip
    env = {"MODELYARD_DATA_DIR": str(data), "MODELYARD_AUTH": "off"}
    result: dict[str, Any] = {"tokens": args.tokens, "slots": args.slots, "eager": args.eager, "runs": []}
    with services() as started:
        gateway = Service("modelyard", command, f"{url}/ready", data, env)
        started.append(gateway)
        gateway.wait_ready(900)
        versions = {"llama.cpp": GGUF, "vllm": HF}
        asyncio.run(load(url, GGUF, 1, 1, 8))
        for concurrency in sorted({1, args.slots}):  # llama.cpp before vLLM exists: the engine alone on the cores
            figures = asyncio.run(load(url, GGUF, concurrency, args.requests, args.tokens))
            result["runs"].append({"kind": "llama.cpp alone", "concurrency": concurrency, "rep": 0, **figures})
            print(f"llama.cpp alone c={concurrency}: {figures['tokens_per_s']:.1f} tokens/s, "
                  f"TTFT p50 {figures['ttft_p50_ms']:.0f} ms", flush=True)  # fmt: skip
        with httpx.Client(base_url=url, timeout=30) as client:
            convert_started = time.monotonic()
            convert = [str(PRODUCT_PYTHON), "-m", "modelyard", "models", "convert", GGUF, "--to", "hf",
                       "--alias", "staging"]  # fmt: skip
            subprocess.run(convert, env={**os.environ, **env}, check=True, capture_output=True)
            result["convert_s"] = time.monotonic() - convert_started
            vllm = wait_engine(client, HF, 1800)
            llama = wait_engine(client, GGUF, 60)
        result["cold_start_s"] = {"llama.cpp": llama["cold_start_s"], "vllm": vllm["cold_start_s"]}
        result["idle_cores"] = {"llama.cpp": idle_cores(llama["pid"], 5), "vllm": idle_cores(vllm["pid"], 5)}
        for model in versions.values():
            asyncio.run(load(url, model, 1, 1, 8))  # warm-up: first-request costs stay out of the figures
        for rep in range(args.reps):
            order = list(versions) if rep % 2 == 0 else list(reversed(versions))
            for kind in order:
                for concurrency in sorted({1, args.slots}):
                    figures = asyncio.run(load(url, versions[kind], concurrency, args.requests, args.tokens))
                    result["runs"].append({"kind": kind, "concurrency": concurrency, "rep": rep, **figures})
                    print(f"rep {rep} {kind:9} c={concurrency}: {figures['tokens_per_s']:.1f} tokens/s, "
                          f"TTFT p50 {figures['ttft_p50_ms']:.0f} ms", flush=True)  # fmt: skip
    path = report.write_json("engine_kinds", result)
    print(f"\nconversion {result['convert_s']:.0f} s; cold start llama.cpp {result['cold_start_s']['llama.cpp']:.1f} s,"
          f" vLLM {result['cold_start_s']['vllm']:.1f} s; cores busy while idle: llama.cpp "
          f"{result['idle_cores']['llama.cpp']:.2f}, vLLM {result['idle_cores']['vllm']:.2f}\n")  # fmt: skip
    print("| engine | concurrency | tokens/s (median of reps) | per-stream tokens/s p50 | TTFT p50 ms |")
    print("| --- | --- | --- | --- | --- |")
    for kind in ("llama.cpp alone", *versions):
        for concurrency in sorted({1, args.slots}):
            runs = [r for r in result["runs"] if r["kind"] == kind and r["concurrency"] == concurrency]
            print(f"| {kind} | {concurrency} | {percentile([r['tokens_per_s'] for r in runs], 50):.1f} | "
                  f"{percentile([r['stream_tokens_per_s_p50'] for r in runs], 50):.1f} | "
                  f"{percentile([r['ttft_p50_ms'] for r in runs], 50):.0f} |")  # fmt: skip
    print(f"\n{path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
