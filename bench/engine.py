"""Scenario 3 — the real engine: modelyard vs direct llama-server vs llama-cpp-python's server, default model.

``modelyard serve`` is started as a user would start it (its own llama-server, default settings: 8 parallel slots,
16 384 context, threads = CPU count). "Direct" is that very llama-server process, addressed on its private port, so
gateway and direct share one engine with one warm state. llama-cpp-python's ``llama_cpp.server`` serves the same
GGUF with the same thread count and the per-request context llama-server gives each slot (16 384 / 8); it has no
parallel slots, so concurrent requests queue in it — that is what it does.

Each contender streams the same completion prompts with the same ``max_tokens``; the end of text is suppressed
(``ignore_eos`` for llama-server, a ``logit_bias`` on Gemma's end tokens for llama-cpp-python) so every request
generates exactly ``max_tokens`` tokens. At each concurrency (1, 4, 8) every worker sends ``--requests`` requests;
tokens/s is all tokens over the wall time, TTFT is from send to the first text event.

    bench/.venv/bin/python -m bench.engine --requests 3 --reps 3
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import psutil
import uvloop

from bench import report
from bench.contenders import Endpoint
from bench.httpclient import encode_request
from bench.load import StreamResult, concurrent_streams
from bench.options import common_parser, run_dir
from bench.procs import BENCH, PRODUCT_PYTHON, Pinning, Service, free_port, services
from bench.stats import Spread, percentile, ratio, rotated

MODEL = "gemma-3-270m"
LLAMA_CPP_PYTHON = BENCH / ".venv-llamacpp" / "bin" / "python"
GEMMA_END_TOKENS = {"1": -100, "106": -100}  # <eos>, <end_of_turn>
PROMPTS = [
    "The history of the sea is",
    "In a small village at the edge of the forest, there lived",
    "The most important idea in computer science is",
    "Here is a recipe for a simple tomato soup:",
    "The weather report for tomorrow says",
    "A letter to my future self:",
    "The three laws of thermodynamics can be explained as follows.",
    "Once upon a time, a robot",
]
TARGETS = {"tokens_vs_direct": 0.98, "added_ttft_ms": 1.0, "tokens_vs_llamacpp_at_8": 3.0}


def requests_for(port: int, max_tokens: int) -> list[bytes]:
    raws = []
    for prompt in PROMPTS:
        payload = {
            "model": MODEL,
            "prompt": prompt,
            "max_tokens": max_tokens,
            "stream": True,
            "ignore_eos": True,
            "logit_bias": GEMMA_END_TOKENS,
        }
        raws.append(encode_request("POST", "/v1/completions", f"127.0.0.1:{port}", json.dumps(payload).encode()))
    return raws


def start_contenders(started: list[Service], logs: Path, pinning: Pinning, args: Any) -> dict[str, Endpoint]:
    port = free_port()
    command = [
        *pinning.prefix(pinning.servers),
        str(PRODUCT_PYTHON),
        "-m",
        "modelyard",
        "serve",
        "--port",
        str(port),
        "--log-level",
        "warning",
        *args.gateway_arg,
    ]
    # Auth explicitly off: this scenario compares engines; the cost of keys and limits is bench.auth_cost's subject.
    env = {"MODELYARD_DATA_DIR": str(logs), "MODELYARD_AUTH": "off"}
    gateway = Service("modelyard", command, f"http://127.0.0.1:{port}/ready", logs, env)
    started.append(gateway)
    gateway.wait_ready(300)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=5) as answer:
        engine_pid = json.load(answer)["engines"][0]["pid"]
    argv = psutil.Process(engine_pid).cmdline()
    flag = {argv[i]: argv[i + 1] for i in range(len(argv) - 1) if argv[i].startswith("--")}
    endpoints = {"modelyard": Endpoint("modelyard", port, gateway), "direct": Endpoint("direct", int(flag["--port"]))}
    if "llama-cpp-python" in args.contenders:
        if not LLAMA_CPP_PYTHON.exists():
            raise SystemExit(f"{LLAMA_CPP_PYTHON} is missing: run `make bench-setup` first")
        lcp_port = free_port()
        threads = flag["--threads"]
        command = [
            *pinning.prefix(pinning.servers),
            str(LLAMA_CPP_PYTHON),
            "-m",
            "llama_cpp.server",
            "--model",
            flag["--model"],
            "--host",
            "127.0.0.1",
            "--port",
            str(lcp_port),
            "--n_threads",
            threads,
            "--n_threads_batch",
            threads,
            "--n_ctx",
            str(int(flag["--ctx-size"]) // int(flag["--parallel"])),
            "--n_batch",
            flag["--batch-size"],
            "--verbose",
            "False",
            "--interrupt_requests",
            "False",  # its default drops a running stream when another request arrives; queue them instead
        ]
        service = Service("llama-cpp-python", command, f"http://127.0.0.1:{lcp_port}/v1/models", logs)
        started.append(service)
        service.wait_ready(120)
        endpoints["llama-cpp-python"] = Endpoint("llama-cpp-python", lcp_port, service)
    return endpoints


def measure(args: Any) -> dict[str, Any]:
    pinning = Pinning.named(args.pin)
    pinning.pin_self()
    logs = run_dir("engine")
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    with services() as started:
        endpoints = start_contenders(started, logs, pinning, args)
        gateway_pid = endpoints["modelyard"].service.pid  # type: ignore[union-attr]
        rss = {"ready_mb": psutil.Process(gateway_pid).memory_info().rss / 2**20}
        names = [n for n in ("direct", "modelyard", "llama-cpp-python") if n in endpoints]
        runs: dict[str, dict[str, list[StreamResult]]] = {str(c): {n: [] for n in names} for c in concurrencies}
        for name in names:  # warm-up: model pages in memory, prompt cache, connection pools
            warm_up = requests_for(endpoints[name].port, 8)
            uvloop.run(concurrent_streams("127.0.0.1", endpoints[name].port, warm_up, 1, requests_per_worker=2))
        for concurrency in concurrencies:
            for rep in range(args.reps):
                for name in rotated(names, rep):
                    port = endpoints[name].port
                    result = uvloop.run(
                        concurrent_streams(
                            "127.0.0.1",
                            port,
                            requests_for(port, args.max_tokens),
                            concurrency,
                            requests_per_worker=args.requests,
                        )
                    )
                    runs[str(concurrency)][name].append(result)
                    report.console().print(
                        f"[dim]c={concurrency} rep {rep + 1} {name}: {result.tokens_per_s:.1f} tokens/s, "
                        f"TTFT p50 {percentile(result.ttft_ms, 50):.1f} ms, errors {result.errors}"
                        f"{' ' + result.error_samples[0] if result.error_samples else ''}[/]"
                    )
        rss["end_mb"] = psutil.Process(gateway_pid).memory_info().rss / 2**20
    return {"names": names, "runs": runs, "gateway_rss": rss}


def summarize(raw: dict[str, Any], args: Any) -> dict[str, Any]:
    names: list[str] = raw["names"]
    summary: dict[str, Any] = {"concurrency": {}}
    for concurrency, by_name in raw["runs"].items():
        level: dict[str, Any] = {}
        for name in names:
            runs: list[StreamResult] = by_name[name]
            level[name] = {
                "tokens_per_s": Spread.of([r.tokens_per_s for r in runs]),
                "ttft_p50_ms": Spread.of([percentile(r.ttft_ms, 50) for r in runs]),
                "ttft_p99_ms": Spread.of([percentile(r.ttft_ms, 99) for r in runs]),
                "itl_p50_ms": Spread.of([percentile(r.itl_ms, 50) for r in runs]),
                "tokens_per_request": Spread.of([r.tokens / r.requests for r in runs if r.requests]),
                "requests": sum(r.requests for r in runs),
                "errors": sum(r.errors for r in runs),
            }
            for other in ("direct", "llama-cpp-python"):
                if name != other and other in by_name:
                    pairs = zip(runs, by_name[other], strict=True)
                    level[name][f"tokens_vs_{other}"] = Spread.of(
                        [ratio(r.tokens_per_s, o.tokens_per_s) for r, o in pairs]
                    )
            if name != "direct":
                pairs = zip(runs, by_name["direct"], strict=True)
                level[name]["added_ttft_p50_ms"] = Spread.of(
                    [percentile(r.ttft_ms, 50) - percentile(d.ttft_ms, 50) for r, d in pairs]
                )
        summary["concurrency"][concurrency] = level
    summary["targets"] = _targets(summary["concurrency"])
    summary["gateway_rss_mb"] = raw["gateway_rss"]  # the `modelyard serve` process itself, engine excluded
    summary["settings"] = {
        "requests_per_stream": args.requests,
        "max_tokens": args.max_tokens,
        "reps": args.reps,
        "pin": args.pin,
        "gateway_args": args.gateway_arg,
    }
    return summary


def _targets(levels: dict[str, Any]) -> list[dict[str, Any]]:
    checks = []
    for concurrency, level in levels.items():
        gateway = level.get("modelyard", {})
        if "tokens_vs_direct" in gateway:
            value = gateway["tokens_vs_direct"].median
            met = value >= TARGETS["tokens_vs_direct"]
            checks.append({"target": f"tokens/s >= 0.98x direct (c={concurrency})", "measured": value, "met": met})
        if "added_ttft_p50_ms" in gateway:
            value = gateway["added_ttft_p50_ms"].median
            met = value <= TARGETS["added_ttft_ms"]
            checks.append({"target": f"added TTFT <= 1 ms median (c={concurrency})", "measured": value, "met": met})
    at_8 = levels.get("8", {}).get("modelyard", {})
    if "tokens_vs_llama-cpp-python" in at_8:
        value = at_8["tokens_vs_llama-cpp-python"].median
        met = value >= TARGETS["tokens_vs_llamacpp_at_8"]
        checks.append({"target": "tokens/s at c=8 >= 3x llama-cpp-python", "measured": value, "met": met})
    return checks


def show(summary: dict[str, Any], names: list[str]) -> None:
    rows = []
    for concurrency, level in summary["concurrency"].items():
        for name in names:
            e = level[name]
            rows.append(
                [
                    f"c={concurrency} {name}",
                    e["tokens_per_s"].fmt(1),
                    e["ttft_p50_ms"].fmt(1),
                    e["ttft_p99_ms"].fmt(1),
                    e["itl_p50_ms"].fmt(2),
                    e["tokens_per_request"].fmt(0),
                    f"{e['requests']}/{e['errors']}",
                    e.get("tokens_vs_direct", Spread.of([])).fmt(3, "x"),
                    e.get("added_ttft_p50_ms", Spread.of([])).fmt(2),
                ]
            )
    columns = ["concurrency / contender", "tokens/s", "TTFT p50 ms", "TTFT p99 ms", "ITL p50 ms", "tokens/req"]
    columns += ["requests/errors", "vs direct", "added TTFT ms"]
    out = report.console()
    out.print(report.table("Scenario 3 - real engine, default model (median (min-max) over reps)", columns, rows))
    rows = [
        [t["target"], f"{t['measured']:.3f}", "[green]met[/]" if t["met"] else "[red]missed[/]"]
        for t in summary["targets"]
    ]
    out.print(report.table("Targets", ["target", "measured", ""], rows))
    rss = summary["gateway_rss_mb"]
    out.print(
        f"modelyard serve process RSS (engine excluded): {rss['ready_mb']:.1f} MB ready, {rss['end_mb']:.1f} MB end"
    )


def plot(summary: dict[str, Any], names: list[str], publish: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"direct": "#7f7f7f", "modelyard": "#2ca02c", "llama-cpp-python": "#ff7f0e"}
    levels = summary["concurrency"]
    xs = [int(c) for c in levels]
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name in names:
        for axis, key in ((left, "tokens_per_s"), (right, "ttft_p50_ms")):
            spreads = [levels[c][name][key] for c in levels]
            axis.errorbar(
                xs,
                [s.median for s in spreads],
                yerr=[[s.median - s.low for s in spreads], [s.high - s.median for s in spreads]],
                fmt="o-",
                capsize=4,
                color=colors.get(name),
                label=name,
            )
    left.set_title("Aggregate output tokens/s")
    left.set_ylabel("tokens/s")
    right.set_title("Time to first token (median)")
    right.set_ylabel("ms (log scale)")
    right.set_yscale("log")
    for axis in (left, right):
        axis.set_xlabel("concurrent streams")
        axis.set_xticks(xs)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle("Scenario 3 - Gemma 3 270M Q4_K_M on 2 shared CPU cores, same GGUF and threads")
    report.save_plot(figure, "engine", publish)
    plt.close(figure)


def main(argv: list[str] | None = None) -> None:
    parser = common_parser(__doc__.split("\n\n")[0], duration_s=0, reps=3)
    parser.add_argument("--concurrency", default="1,4,8", help="concurrent streams (comma-separated)")
    parser.add_argument("--requests", type=int, default=2, help="requests per stream at each concurrency")
    parser.add_argument("--max-tokens", type=int, default=64, help="tokens generated per request")
    parser.add_argument("--contenders", default="direct,modelyard,llama-cpp-python")
    parser.add_argument("--gateway-arg", action="append", default=[], help="extra flag for `modelyard serve`")
    args = parser.parse_args(argv)
    raw = measure(args)
    summary = summarize(raw, args)
    show(summary, raw["names"])
    plot(summary, raw["names"], args.publish)
    path = report.write_json("engine", {"summary": summary})
    report.console().print(f"results: {path}")


if __name__ == "__main__":
    main()
