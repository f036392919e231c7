"""Scenario 2 — streaming: time to first token and inter-token latency through modelyard vs direct to the mock.

``--streams`` concurrent clients (100 by default) each stream one chat completion after another from a mock that
emits ``--tokens`` tokens at ``--token-rate`` tokens/s per stream. Every SSE event that carries text is timestamped on
arrival. What the gateway adds is the difference from direct, paired per repetition (contenders interleaved).

    bench/.venv/bin/python -m bench.streaming --duration 10 --reps 5
"""

from __future__ import annotations

from typing import Any

import uvloop

from bench import report
from bench.contenders import MOCK_MODEL, start_on_mock
from bench.httpclient import encode_request
from bench.load import StreamResult, concurrent_streams
from bench.options import common_parser, run_dir
from bench.procs import Pinning, services
from bench.stats import Spread, percentile, rotated

PATH = "/v1/chat/completions"
TARGET_ADDED_TTFT_MS = 1.0


def body(tokens: int) -> bytes:
    return (
        b'{"model":"' + MOCK_MODEL.encode() + b'","messages":[{"role":"user","content":"Count from one to fifty."}],'
        b'"max_tokens":%d,"stream":true}' % tokens
    )


def measure(args: Any) -> dict[str, Any]:
    pinning = Pinning.named(args.pin)
    pinning.pin_self()
    logs = run_dir("streaming")
    names = ["direct", "modelyard"]
    with services() as started:
        mock_settings = {"latency_ms": args.ttft_ms, "token_rate": args.token_rate, "tokens": args.tokens}
        endpoints = start_on_mock(started, logs, pinning, names, args.gateway_arg, args.baseline, **mock_settings)
        if args.baseline:
            names.append("baseline")
        stream_s = args.ttft_ms / 1000 + args.tokens / args.token_rate
        runs: dict[str, list[StreamResult]] = {n: [] for n in names}
        for rep in range(-1, args.reps):  # rep -1 is a short warm-up, not recorded
            for name in rotated(names, max(rep, 0)):
                port = endpoints[name].port
                raw = encode_request("POST", PATH, f"127.0.0.1:{port}", body(args.tokens))
                duration = stream_s * 1.5 if rep < 0 else args.duration
                result = uvloop.run(
                    concurrent_streams("127.0.0.1", port, [raw], args.streams, duration, stagger_s=stream_s)
                )
                if rep >= 0:
                    runs[name].append(result)
                    report.console().print(
                        f"[dim]rep {rep + 1} {name}: {result.requests} streams, "
                        f"TTFT p50 {percentile(result.ttft_ms, 50):.2f} ms, "
                        f"ITL p50 {percentile(result.itl_ms, 50):.2f} ms, errors {result.errors}[/]"
                    )
    return {"names": names, "runs": runs}


def summarize(raw: dict[str, Any], args: Any) -> dict[str, Any]:
    names: list[str] = raw["names"]
    runs: dict[str, list[StreamResult]] = raw["runs"]
    summary: dict[str, Any] = {"contenders": {}}
    for name in names:
        entry: dict[str, Any] = {
            "streams_completed": sum(r.requests for r in runs[name]),
            "errors": sum(r.errors for r in runs[name]),
            "error_samples": [s for r in runs[name] for s in r.error_samples][:3],
            "tokens_per_s": Spread.of([r.tokens_per_s for r in runs[name]]),
        }
        for metric in ("ttft_ms", "itl_ms"):
            for p in (50, 99):
                entry[f"{metric[:-3]}_p{p}_ms"] = Spread.of([percentile(getattr(r, metric), p) for r in runs[name]])
                if name != "direct":
                    diffs = [
                        percentile(getattr(r, metric), p) - percentile(getattr(d, metric), p)
                        for r, d in zip(runs[name], runs["direct"], strict=True)
                    ]
                    entry[f"added_{metric[:-3]}_p{p}_ms"] = Spread.of(diffs)
        summary["contenders"][name] = entry
    added = summary["contenders"]["modelyard"]["added_ttft_p50_ms"].median
    summary["targets"] = [
        {
            "target": "added TTFT <= 1 ms median (mock, 100 streams)",
            "measured": added,
            "unit": " ms",
            "met": added <= TARGET_ADDED_TTFT_MS,
        }
    ]
    summary["settings"] = {
        "duration_s": args.duration,
        "reps": args.reps,
        "streams": args.streams,
        "tokens": args.tokens,
        "token_rate": args.token_rate,
        "mock_ttft_ms": args.ttft_ms,
        "pin": args.pin,
        "gateway_args": args.gateway_arg,
    }
    return summary


def show(summary: dict[str, Any], names: list[str]) -> None:
    rows = []
    for name in names:
        e = summary["contenders"][name]
        rows.append(
            [
                name,
                str(e["streams_completed"]),
                str(e["errors"]),
                e["tokens_per_s"].fmt(0),
                e["ttft_p50_ms"].fmt(2),
                e["ttft_p99_ms"].fmt(2),
                e["itl_p50_ms"].fmt(2),
                e["itl_p99_ms"].fmt(2),
                e.get("added_ttft_p50_ms", Spread.of([])).fmt(3),
                e.get("added_itl_p50_ms", Spread.of([])).fmt(3),
                e.get("added_itl_p99_ms", Spread.of([])).fmt(3),
            ]
        )
    columns = ["contender", "streams", "errors", "tokens/s", "TTFT p50", "TTFT p99", "ITL p50", "ITL p99"]
    columns += ["added TTFT p50", "added ITL p50", "added ITL p99"]
    out = report.console()
    out.print(report.table("Scenario 2 - streaming, ms (median (min-max) over reps)", columns, rows))
    rows = [
        [t["target"], f"{t['measured']:.3f}{t['unit']}", "[green]met[/]" if t["met"] else "[red]missed[/]"]
        for t in summary["targets"]
    ]
    out.print(report.table("Targets", ["target", "measured", ""], rows))


def plot(raw: dict[str, Any], summary: dict[str, Any], publish: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"direct": "#7f7f7f", "modelyard": "#2ca02c", "baseline": "#1f77b4"}
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for axis, metric, title in ((axes[0], "ttft_ms", "Time to first token"), (axes[1], "itl_ms", "Inter-token gap")):
        for name in raw["names"]:
            samples = sorted(v for r in raw["runs"][name] for v in getattr(r, metric))
            if not samples:
                continue
            ys = [i / len(samples) for i in range(1, len(samples) + 1)]
            axis.plot(samples, ys, color=colors.get(name), label=name)
        axis.set_xscale("log")
        axis.set_xlabel("ms (log scale)")
        axis.set_ylabel("fraction of samples")
        axis.set_title(f"{title}: CDF, all reps pooled")
        axis.grid(alpha=0.3)
        axis.legend()
    settings = summary["settings"]
    figure.suptitle(
        f"Scenario 2 - {settings['streams']} concurrent streams, mock at {settings['token_rate']:.0f} tokens/s per "
        f"stream, {settings['tokens']} tokens each (2 shared cores)"
    )
    report.save_plot(figure, "streaming", publish)
    plt.close(figure)


def main(argv: list[str] | None = None) -> None:
    parser = common_parser(__doc__.split("\n\n")[0], duration_s=5, reps=3)
    parser.add_argument("--streams", type=int, default=100, help="concurrent streams")
    parser.add_argument("--tokens", type=int, default=32, help="tokens per stream")
    parser.add_argument("--token-rate", type=float, default=20.0, help="mock tokens/s per stream")
    parser.add_argument("--ttft-ms", type=float, default=0.0, help="mock delay before the first token")
    parser.add_argument("--gateway-arg", action="append", default=[], help="extra flag for the modelyard gateway")
    parser.add_argument("--baseline", help="also run the gateway of this git revision (before/after comparison)")
    args = parser.parse_args(argv)
    raw = measure(args)
    summary = summarize(raw, args)
    show(summary, raw["names"])
    plot(raw, summary, args.publish)
    path = report.write_json("streaming", {"summary": summary})
    report.console().print(f"results: {path}")


if __name__ == "__main__":
    main()
