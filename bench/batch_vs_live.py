"""A 1 000-line batch beside live traffic, on the real engine: does live latency keep while the batch runs?

The Batch API promises to run lines "only on spare capacity, never starving live traffic". This measures that
promise end to end with ``modelyard serve`` as a user starts it (its own llama-server, the default model, auth off):
a live client sends one chat request at a time and times each; the live latency is measured alone, then while a
1 000-line batch (chat lines, a few tokens each) is running, then alone again after the batch is cancelled — the
two "alone" phases bracket the "with batch" phase so a drift of the machine shows up as a difference between them.
It also reports how many batch lines finished during the live phase, i.e. that the batch did make progress.

Run with the product's interpreter (it needs only httpx, a product dependency):

    .venv/bin/python -m bench.batch_vs_live --live 30 --lines 1000
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import httpx

from bench.procs import PRODUCT_PYTHON, Service, free_port, services
from bench.stats import percentile

MODEL = "gemma-3-270m"
LIVE = {"model": MODEL, "messages": [{"role": "user", "content": "Name a colour."}], "max_tokens": 8}


def batch_file(lines: int, max_tokens: int) -> bytes:
    rows = []
    for n in range(lines):
        body = {"model": MODEL, "messages": [{"role": "user", "content": f"Count to {n % 9 + 2}."}]}
        body["max_tokens"] = max_tokens
        rows.append(json.dumps({"custom_id": f"line-{n}", "method": "POST", "url": "/v1/chat/completions",
                                "body": body}))  # fmt: skip
    return ("\n".join(rows) + "\n").encode()


def live_phase(client: httpx.Client, count: int) -> list[float]:
    """``count`` live requests one after another; their latencies in ms (a failure stops the benchmark)."""
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        answer = client.post("/v1/chat/completions", json={**LIVE, "temperature": 0})
        answer.raise_for_status()
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


def batch_counts(client: httpx.Client, batch_id: str) -> tuple[str, int]:
    body = client.get(f"/v1/batches/{batch_id}").raise_for_status().json()
    counts = body.get("request_counts") or {}
    return body["status"], int(counts.get("completed", 0)) + int(counts.get("failed", 0))


def summary(name: str, values: list[float]) -> str:
    return f"| {name} | {len(values)} | {percentile(values, 50):.0f} | {percentile(values, 90):.0f} |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--live", type=int, default=30, help="live requests per phase")
    parser.add_argument("--lines", type=int, default=1000, help="batch lines")
    parser.add_argument("--line-tokens", type=int, default=4, help="max_tokens of each batch line")
    parser.add_argument("--warmup-s", type=float, default=5.0, help="seconds the batch runs before live timing")
    parser.add_argument("gateway_arg", nargs="*", help="extra `modelyard serve` flags (after --)")
    args = parser.parse_args(argv)
    logs = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    port = free_port()
    command = [str(PRODUCT_PYTHON), "-m", "modelyard", "serve", "--port", str(port), "--log-level", "warning"]
    env = {"MODELYARD_DATA_DIR": str(logs), "MODELYARD_AUTH": "off"}
    with services() as started:
        gateway = Service("modelyard", [*command, *args.gateway_arg], f"http://127.0.0.1:{port}/ready", logs, env)
        started.append(gateway)
        gateway.wait_ready(600)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
            live_phase(client, 3)  # warm the engine's caches
            before = live_phase(client, args.live)
            upload = client.post(
                "/v1/files",
                files={"file": ("batch.jsonl", batch_file(args.lines, args.line_tokens), "application/jsonl")},
                data={"purpose": "batch"},
            ).raise_for_status()
            batch = client.post(
                "/v1/batches",
                json={"input_file_id": upload.json()["id"], "endpoint": "/v1/chat/completions",
                      "completion_window": "24h"},
            ).raise_for_status().json()  # fmt: skip
            time.sleep(args.warmup_s)
            _, done_before = batch_counts(client, batch["id"])
            phase_started = time.monotonic()
            during = live_phase(client, args.live)
            phase_s = time.monotonic() - phase_started
            status, done_after = batch_counts(client, batch["id"])
            client.post(f"/v1/batches/{batch['id']}/cancel").raise_for_status()
            time.sleep(2)
            after = live_phase(client, args.live)
    alone = before + after
    lines_done = done_after - done_before
    print(f"modelyard serve (real llama-server, default model); live chat max_tokens {LIVE['max_tokens']}, "
          f"batch of {args.lines} lines x max_tokens {args.line_tokens}\n")  # fmt: skip
    print("| live phase | requests | p50 ms | p90 ms |\n| --- | --- | --- | --- |")
    print(summary("alone, before the batch", before))
    print(summary("while the batch runs", during))
    print(summary("alone, after cancelling it", after))
    print(
        f"\nlive p50 with the batch / alone: {percentile(during, 50) / percentile(alone, 50):.2f}x "
        f"(before vs after alone: {percentile(after, 50) / percentile(before, 50):.2f}x)"
    )
    print(f"batch lines finished during the live phase: {lines_done} in {phase_s:.1f} s "
          f"({lines_done / phase_s:.1f} lines/s; batch status then: {status})")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
