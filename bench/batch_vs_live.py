"""A 1 000-line batch beside live traffic, on the real engine: does live latency keep while the batch runs?

The Batch API promises to run lines "only on spare capacity, never starving live traffic". This measures that
promise end to end with ``modelyard serve`` as a user starts it (its own llama-server, the default model, auth off):
a live client sends one chat request at a time and times each; the live latency is measured alone, then for as
long as a 1 000-line batch (chat lines, a few tokens each) runs to completion, then alone again — the two "alone"
phases bracket the "with batch" phase so a drift of the machine shows up as a difference between them. It also
checks the batch's output file: every line answered once, with a 200, none lost or repeated. ``--max-batch-s``
bounds the run: a batch still running then is cancelled (and reported as such).

Run with the product's interpreter (it needs only httpx, a product dependency):

    .venv/bin/python -m bench.batch_vs_live --live 30 --lines 1000   # runs the batch to completion
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


TERMINAL = ("completed", "failed", "cancelled", "expired")


def live_until_done(client: httpx.Client, batch_id: str, limit_s: float) -> tuple[list[float], str, float]:
    """Live requests one after another for as long as the batch runs (at most ``limit_s``)."""
    started = time.monotonic()
    latencies: list[float] = []
    status = "in_progress"
    while time.monotonic() - started < limit_s:
        latencies += live_phase(client, 5)
        status, _ = batch_counts(client, batch_id)
        if status in TERMINAL:
            break
    return latencies, status, time.monotonic() - started


def batch_outcome(client: httpx.Client, batch_id: str, lines: int) -> str:
    """What the output file holds: each custom_id answered at most once, and how many with a 200."""
    deadline = time.monotonic() + 60
    body = client.get(f"/v1/batches/{batch_id}").raise_for_status().json()
    while body["status"] not in TERMINAL and time.monotonic() < deadline:  # a cancel settles in-flight lines
        time.sleep(1)
        body = client.get(f"/v1/batches/{batch_id}").raise_for_status().json()
    answered: list[str] = []
    ok = 0
    if body.get("output_file_id"):
        text = client.get(f"/v1/files/{body['output_file_id']}/content").raise_for_status().text
        for row in (json.loads(line) for line in text.splitlines() if line.strip()):
            answered.append(row["custom_id"])
            ok += row["response"]["status_code"] == 200
    repeated = len(answered) - len(set(answered))
    return (
        f"{body['status']}, {len(set(answered))} of {lines} lines answered ({ok} with 200), "
        f"{repeated} repeated, counts {body.get('request_counts')}"
    )


def summary(name: str, values: list[float]) -> str:
    return f"| {name} | {len(values)} | {percentile(values, 50):.0f} | {percentile(values, 90):.0f} |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--live", type=int, default=30, help="live requests per phase")
    parser.add_argument("--lines", type=int, default=1000, help="batch lines")
    parser.add_argument("--line-tokens", type=int, default=4, help="max_tokens of each batch line")
    parser.add_argument("--warmup-s", type=float, default=5.0, help="seconds the batch runs before live timing")
    parser.add_argument("--max-batch-s", type=float, default=1800.0, help="cancel the batch if still running then")
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
            during, status, phase_s = live_until_done(client, batch["id"], args.max_batch_s)
            if status not in TERMINAL:
                client.post(f"/v1/batches/{batch['id']}/cancel").raise_for_status()
            outcome = batch_outcome(client, batch["id"], args.lines)
            time.sleep(2)
            after = live_phase(client, args.live)
    alone = before + after
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
    print(f"batch: {outcome}; ran {phase_s:.1f} s beside live traffic ({status} at the end of the live phase)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
