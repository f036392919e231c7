"""The engine's share: the gateway's CPU time per streamed token next to the engine's, at 1, 4 and 8 streams.

Whether a gateway costs throughput on a real engine is a small difference of two noisy wall clocks. The CPU the
kernel charges per token is steadier: one ``llama-server`` (default model, ``--parallel 8``, ``--threads`` = the
CPU count, the product's engine flags) is streamed to directly and through modelyard's gateway
(``bench/gateway_launcher.py``, its default observers on); each measurement reads ``utime + stime`` of the
gateway (with its record writer) and of the engine from ``/proc`` before and after, and divides by the tokens
streamed. Every request generates exactly ``--max-tokens`` tokens (``ignore_eos``). Direct and gateway runs
alternate (order rotated per repetition), so the wall-clock ratio (gateway tokens/s over direct) is paired too.

    nice .venv/bin/python -m bench.engine_share --reps 3
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

import uvloop

from bench import report
from bench.cpu_cost import process_cpu_s
from bench.httpclient import encode_request
from bench.load import concurrent_streams
from bench.options import run_dir
from bench.prefix_routing import start_engines
from bench.procs import PRODUCT_PYTHON, Service, free_port, services
from bench.stats import Spread, percentile, ratio, rotated
from modelyard.registry.default_model import DEFAULT_MODEL

TARGET_SHARE = 0.01
PROMPTS = ("The history of the sea is", "Once upon a time, a robot", "A letter to my future self:")


def requests_for(port: int, max_tokens: int) -> list[bytes]:
    raws = []
    for prompt in PROMPTS:
        payload = {
            "model": DEFAULT_MODEL.name,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": max_tokens,
            "stream": True,
            "ignore_eos": True,
        }
        body = json.dumps(payload).encode()
        raws.append(encode_request("POST", "/v1/chat/completions", f"127.0.0.1:{port}", body))
    return raws


def measure(args: Any) -> dict[str, Any]:
    logs = run_dir("engine_share")
    runs: dict[str, dict[str, list[dict[str, float]]]] = {}
    with services() as started:
        engine_args = argparse.Namespace(
            replicas=1, ctx_size=16384, parallel=8, engine_arg=args.engine_arg, threads=os.cpu_count() or 2
        )
        url = start_engines(started, logs, engine_args)[0]
        engine = started[0]
        engine_port = int(url.split(":")[2].split("/")[0])
        port = free_port()
        command = [str(PRODUCT_PYTHON), "-m", "bench.gateway_launcher", "--port", str(port)]
        command += ["--upstream", url.removesuffix("/v1"), "--model", DEFAULT_MODEL.name, *args.gateway_arg]
        gateway = Service("modelyard", command, f"http://127.0.0.1:{port}/ready", logs)
        started.append(gateway)
        gateway.wait_ready(120)
        ports = {"direct": engine_port, "modelyard": port}
        for target in ports.values():  # warm-up
            uvloop.run(concurrent_streams("127.0.0.1", target, requests_for(target, 8), 2, requests_per_worker=1))
        for streams in (int(c) for c in args.concurrency.split(",")):
            level = runs[str(streams)] = {name: [] for name in ports}
            for rep in range(args.reps):
                for name in rotated(list(ports), rep):
                    target = ports[name]
                    engine_before, gateway_before = process_cpu_s(engine.pid), process_cpu_s(gateway.pid)
                    raws = requests_for(target, args.max_tokens)
                    result = uvloop.run(
                        concurrent_streams("127.0.0.1", target, raws, streams, requests_per_worker=args.requests)
                    )
                    engine_s = process_cpu_s(engine.pid) - engine_before
                    gateway_s = process_cpu_s(gateway.pid) - gateway_before if name == "modelyard" else 0.0
                    tokens = max(result.tokens, 1)
                    level[name].append(
                        {
                            "tokens_per_s": result.tokens_per_s,
                            "engine_cpu_ms_per_token": engine_s / tokens * 1000,
                            "engine_wall_ms_per_token": result.elapsed_s / tokens * 1000,
                            "gateway_cpu_ms_per_token": gateway_s / tokens * 1000,
                            "ttft_p50_ms": percentile(result.ttft_ms, 50),
                            "errors": result.errors,
                        }
                    )
                    report.console().print(
                        f"[dim]{streams} streams rep {rep + 1} {name}: {result.tokens_per_s:.1f} tokens/s, "
                        f"engine {engine_s / tokens * 1000:.2f} ms CPU/token, "
                        f"gateway {gateway_s / tokens * 1000:.3f} ms CPU/token, errors {result.errors}[/]"
                    )
    return runs


def summarize(runs: dict[str, dict[str, list[dict[str, float]]]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for streams, level in runs.items():
        gateway, direct = level["modelyard"], level["direct"]
        summary[streams] = {
            "gateway_cpu_ms_per_token": Spread.of([r["gateway_cpu_ms_per_token"] for r in gateway]),
            "engine_cpu_ms_per_token": Spread.of([r["engine_cpu_ms_per_token"] for r in gateway]),
            "engine_wall_ms_per_token": Spread.of([r["engine_wall_ms_per_token"] for r in direct]),
            "gateway_share_of_engine_cpu": Spread.of(
                [ratio(r["gateway_cpu_ms_per_token"], r["engine_cpu_ms_per_token"]) for r in gateway]
            ),
            "tokens_vs_direct": Spread.of(
                [ratio(g["tokens_per_s"], d["tokens_per_s"]) for g, d in zip(gateway, direct, strict=True)]
            ),
            "direct_tokens_per_s": Spread.of([r["tokens_per_s"] for r in direct]),
            "gateway_tokens_per_s": Spread.of([r["tokens_per_s"] for r in gateway]),
            "errors": sum(r["errors"] for r in gateway + direct),
        }
    return summary


def show(summary: dict[str, Any]) -> None:
    rows = [
        [
            streams,
            e["gateway_cpu_ms_per_token"].fmt(3),
            e["engine_cpu_ms_per_token"].fmt(2),
            e["gateway_share_of_engine_cpu"].fmt(4),
            e["engine_wall_ms_per_token"].fmt(2),
            e["tokens_vs_direct"].fmt(3, "x"),
            str(e["errors"]),
        ]
        for streams, e in summary.items()
    ]
    columns = ["streams", "gateway CPU ms/token", "engine CPU ms/token", "gateway/engine CPU", "direct wall ms/token"]
    columns += ["tokens/s vs direct", "errors"]
    report.console().print(report.table("The engine's share (median (min-max) over reps)", columns, rows))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--concurrency", default="1,4,8", help="concurrent streams (comma-separated)")
    parser.add_argument("--requests", type=int, default=2, help="requests per stream per measurement")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--engine-arg", action="append", default=[], help="extra llama-server flag")
    parser.add_argument("--gateway-arg", action="append", default=[], help="extra bench.gateway_launcher flag")
    args = parser.parse_args(argv)
    summary = summarize(measure(args))
    show(summary)
    met = all(e["gateway_share_of_engine_cpu"].median <= TARGET_SHARE for e in summary.values())
    report.console().print(f"gateway CPU <= 1 % of the engine's at every level: {'met' if met else 'missed'}")
    path = report.write_json("engine_share", {"summary": summary, "settings": vars(args)})
    report.console().print(f"results: {path}")


if __name__ == "__main__":
    main()
