"""Scenario 1 — gateway overhead, non-streaming: direct to the mock vs through modelyard vs through LiteLLM.

Three measurements, each repeated ``--reps`` times with the contenders interleaved (the order rotates every
repetition) so that a noisy moment on the shared machine hits all of them alike:

1. closed-loop saturation: ``wrk`` with ``--connections`` connections → requests/s, errors;
2. one connection: ``wrk -c1`` → latency p50/p99, and the latency each gateway adds over direct (paired per rep);
3. open loop at fixed rates (``--rates``): the coordinated-omission-aware Python generator → latency from the
   scheduled send time. A rate above 90 % of a contender's measured saturation is skipped as unreachable.

    bench/.venv/bin/python -m bench.overhead --duration 10 --reps 5
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

import uvloop

from bench import report
from bench.contenders import MOCK_MODEL, start_on_mock
from bench.httpclient import encode_request
from bench.load import OpenLoopResult, open_loop
from bench.options import common_parser, run_dir
from bench.procs import Pinning, services
from bench.stats import Spread, percentile, ratio, rotated
from bench.wrk import WrkResult, run_wrk

PATH = "/v1/chat/completions"
BODY = (
    b'{"model":"' + MOCK_MODEL.encode() + b'","messages":[{"role":"system","content":"You are a helpful assistant."},'
    b'{"role":"user","content":"Write one short sentence about the sea."}],"max_tokens":16,"temperature":0.7}'
)
RATIOS = [  # throughput ratios shown, each paired per repetition, where both contenders ran
    *((name, "direct") for name in ("modelyard", "all-on", "baseline", "granian", "litellm", "litellm-db", "portkey")),
    ("modelyard", "baseline"),
    ("granian", "modelyard"),
    ("all-on", "modelyard"),
    *(("modelyard", other) for other in ("litellm", "litellm-db", "portkey")),
    *(("all-on", other) for other in ("litellm", "litellm-db", "portkey")),
]
TARGETS = {
    "rps_vs_litellm": 40.0,
    "rps_vs_direct": 0.25,
    "added_p50_ms": 0.5,
    "added_p99_ms": 1.5,
}


def measure(args: Any) -> dict[str, Any]:
    pinning = Pinning.named(args.pin)
    pinning.pin_self()
    logs = run_dir("overhead")
    names = [n.strip() for n in args.contenders.split(",") if n.strip()]
    wrk_prefix = pinning.prefix(pinning.client)
    with services() as started:
        endpoints = start_on_mock(started, logs, pinning, names, args.gateway_arg, args.baseline, kind=args.mock)
        if args.baseline:
            names.append("baseline")
        names = [n for n in names if n in endpoints]
        for name in names:  # warm-up: connection pools, lazy imports, caches
            run_wrk(endpoints[name].base + PATH, BODY, 8, 1, prefix=wrk_prefix, headers=endpoints[name].headers)

        saturation: dict[str, list[WrkResult]] = {n: [] for n in names}
        single: dict[str, list[WrkResult]] = {n: [] for n in names}
        for rep in range(args.reps):
            for name in rotated(names, rep):
                url = endpoints[name].base + PATH
                headers = endpoints[name].headers
                saturation[name].append(
                    run_wrk(url, BODY, args.connections, args.duration, prefix=wrk_prefix, headers=headers)
                )
                _progress(f"rep {rep + 1} saturation {name}: {saturation[name][-1].rps:.0f} req/s")
        for rep in range(args.reps):
            for name in rotated(names, rep):
                url = endpoints[name].base + PATH
                headers = endpoints[name].headers
                single[name].append(run_wrk(url, BODY, 1, args.duration, prefix=wrk_prefix, headers=headers))
                _progress(f"rep {rep + 1} one connection {name}: p50 {single[name][-1].p50_ms:.3f} ms")

        capacity = {n: Spread.of([r.rps for r in saturation[n]]).median for n in names}
        rates = [float(r) for r in args.rates.split(",") if r.strip()]
        opened: dict[str, dict[str, list[OpenLoopResult]]] = {str(r): {n: [] for n in names} for r in rates}
        for rate in rates:
            reachable = [n for n in names if rate <= 0.9 * capacity[n]]
            for rep in range(args.reps):
                for name in rotated(reachable, rep):
                    host = f"127.0.0.1:{endpoints[name].port}"
                    raw = encode_request("POST", PATH, host, BODY, endpoints[name].headers)
                    result = uvloop.run(open_loop("127.0.0.1", endpoints[name].port, raw, rate, args.duration))
                    opened[str(rate)][name].append(result)
                    _progress(
                        f"rep {rep + 1} open loop {rate:.0f}/s {name}: p50 {percentile(result.latencies_ms, 50):.3f} ms"
                    )
    return {"names": names, "capacity": capacity, "saturation": saturation, "single": single, "open_loop": opened}


def _progress(line: str) -> None:
    report.console().print(f"[dim]{line}[/]")


def summarize(raw: dict[str, Any], args: Any) -> dict[str, Any]:
    names: list[str] = raw["names"]
    saturation: dict[str, list[WrkResult]] = raw["saturation"]
    single: dict[str, list[WrkResult]] = raw["single"]
    summary: dict[str, Any] = {"saturation": {}, "single_connection": {}, "open_loop": {}, "ratios": {}}
    for name in names:
        runs = saturation[name]
        summary["saturation"][name] = {
            "rps": Spread.of([r.rps for r in runs]),
            "p50_ms": Spread.of([r.p50_ms for r in runs]),
            "p99_ms": Spread.of([r.p99_ms for r in runs]),
            "errors": sum(r.errors for r in runs),
            "requests": sum(r.requests for r in runs),
        }
        runs = single[name]
        summary["single_connection"][name] = {
            "p50_ms": Spread.of([r.p50_ms for r in runs]),
            "p99_ms": Spread.of([r.p99_ms for r in runs]),
            "errors": sum(r.errors for r in runs),
            "added_p50_ms": _paired(single, name, "p50_ms"),
            "added_p99_ms": _paired(single, name, "p99_ms"),
        }
    for one, other in RATIOS:
        if one in names and other in names:
            per_rep = [ratio(m.rps, o.rps) for m, o in zip(saturation[one], saturation[other], strict=True)]
            summary["ratios"][f"{one}/{other}"] = Spread.of(per_rep)
    for rate, by_name in raw["open_loop"].items():
        summary["open_loop"][rate] = {}
        for name in names:
            runs = by_name[name]
            if not runs:
                summary["open_loop"][rate][name] = {"reachable": False, "saturation_rps": raw["capacity"][name]}
                continue
            entry = {
                "reachable": True,
                "achieved_rps": Spread.of([r.achieved_rps for r in runs]),
                "p50_ms": Spread.of([percentile(r.latencies_ms, 50) for r in runs]),
                "p99_ms": Spread.of([percentile(r.latencies_ms, 99) for r in runs]),
                "p999_ms": Spread.of([percentile(r.latencies_ms, 99.9) for r in runs]),
                "errors": sum(r.errors for r in runs),
                "dispatch_lag_p99_ms": Spread.of([percentile(r.dispatch_lag_ms, 99) for r in runs]),
            }
            direct = by_name.get("direct") or []
            if name != "direct" and len(direct) == len(runs):
                for p in (50, 99):
                    diffs = [
                        percentile(r.latencies_ms, p) - percentile(d.latencies_ms, p)
                        for r, d in zip(runs, direct, strict=True)
                    ]
                    entry[f"added_p{p}_ms"] = Spread.of(diffs)
            summary["open_loop"][rate][name] = entry
    summary["targets"] = _targets(summary)
    summary["settings"] = {
        "duration_s": args.duration,
        "reps": args.reps,
        "connections": args.connections,
        "pin": args.pin,
        "gateway_args": args.gateway_arg,
        "mock": args.mock,
    }
    return summary


def _paired(runs: dict[str, list[WrkResult]], name: str, field: str) -> Spread:
    if name == "direct" or "direct" not in runs:
        return Spread.of([])
    return Spread.of([getattr(r, field) - getattr(d, field) for r, d in zip(runs[name], runs["direct"], strict=True)])


def _targets(summary: dict[str, Any]) -> list[dict[str, Any]]:
    checks = []
    ratios = summary["ratios"]
    if "modelyard/litellm" in ratios:
        value = ratios["modelyard/litellm"].median
        checks.append(_check("throughput ≥ 40x LiteLLM", value, value >= TARGETS["rps_vs_litellm"], "x"))
    if "modelyard/direct" in ratios:
        value = ratios["modelyard/direct"].median
        checks.append(_check("throughput ≥ 0.25x direct", value, value >= TARGETS["rps_vs_direct"], "x"))
    for key, floor in (("all-on/modelyard", 0.6), ("all-on/litellm-db", 100.0), ("all-on/portkey", 10.0)):
        if key in ratios:
            value = ratios[key].median
            checks.append(_check(f"throughput {key} ≥ {floor:g}x", value, value >= floor, "x"))
    for name in ("modelyard", "all-on"):
        checks.extend(_latency_checks(summary, name))
    return checks


def _latency_checks(summary: dict[str, Any], name: str) -> list[dict[str, Any]]:
    checks = []
    single = summary["single_connection"].get(name)
    if single and single["added_p50_ms"].n:
        value = single["added_p50_ms"].median
        checks.append(_check(f"{name} added p50 ≤ 0.5 ms (1 conn)", value, value <= TARGETS["added_p50_ms"], " ms"))
        value = single["added_p99_ms"].median
        checks.append(_check(f"{name} added p99 ≤ 1.5 ms (1 conn)", value, value <= TARGETS["added_p99_ms"], " ms"))
    return checks


def _check(target: str, value: float, met: bool, unit: str) -> dict[str, Any]:
    return {"target": target, "measured": value, "unit": unit, "met": bool(met) and not math.isnan(value)}


def show(summary: dict[str, Any], names: list[str]) -> None:
    out = report.console()
    rows = []
    for name in names:
        s = summary["saturation"][name]
        one = summary["single_connection"][name]
        rows.append(
            [
                name,
                s["rps"].fmt(0),
                str(s["errors"]),
                one["p50_ms"].fmt(3),
                one["p99_ms"].fmt(3),
                one["added_p50_ms"].fmt(3),
                one["added_p99_ms"].fmt(3),
            ]
        )
    columns = [
        "contender",
        "req/s (saturation)",
        "errors",
        "p50 ms (1 conn)",
        "p99 ms (1 conn)",
        "added p50",
        "added p99",
    ]
    out.print(report.table("Scenario 1 — non-streaming overhead (median (min-max) over reps)", columns, rows))
    rows = []
    for rate, by_name in summary["open_loop"].items():
        for name in names:
            e = by_name[name]
            if not e["reachable"]:
                rows.append([f"{float(rate):.0f}/s {name}", "unreachable", f"saturates at {e['saturation_rps']:.0f}"])
                continue
            added = e.get("added_p50_ms")
            rows.append(
                [
                    f"{float(rate):.0f}/s {name}",
                    e["achieved_rps"].fmt(0),
                    e["p50_ms"].fmt(3),
                    e["p99_ms"].fmt(3),
                    e["p999_ms"].fmt(3),
                    added.fmt(3) if added else "-",
                    e["added_p99_ms"].fmt(3) if added else "-",
                    str(e["errors"]),
                    e["dispatch_lag_p99_ms"].fmt(3),
                ]
            )
    columns = ["rate / contender", "achieved", "p50 ms", "p99 ms", "p99.9 ms", "added p50", "added p99", "errors"]
    out.print(report.table("Open loop, latency from scheduled send time", [*columns, "gen. lag p99"], rows))
    rows = [[k, v.fmt(2, "x")] for k, v in summary["ratios"].items()]
    out.print(report.table("Throughput ratios (paired per repetition)", ["ratio", "median (min-max)"], rows))
    rows = [
        [t["target"], f"{t['measured']:.3f}{t['unit']}", "[green]met[/]" if t["met"] else "[red]missed[/]"]
        for t in summary["targets"]
    ]
    out.print(report.table("Targets", ["target", "measured", ""], rows))


def plot(summary: dict[str, Any], names: list[str], publish: bool, scenario: str = "overhead") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"direct": "#7f7f7f", "modelyard": "#2ca02c", "all-on": "#98df8a", "litellm": "#d62728",
              "litellm-db": "#ff9896", "baseline": "#1f77b4", "portkey": "#9467bd", "granian": "#ff7f0e"}  # fmt: skip
    figure, (left, middle, right) = plt.subplots(1, 3, figsize=(15, 4.5))
    rps = [summary["saturation"][n]["rps"] for n in names]
    left.bar(names, [s.median for s in rps], color=[colors.get(n, "C0") for n in names])
    left.errorbar(names, [s.median for s in rps], yerr=_yerr(rps), fmt="none", ecolor="black", capsize=4)
    left.set_yscale("log")
    left.set_title("Saturation throughput (wrk, closed loop)")
    left.set_ylabel("requests/s (log scale)")
    for index, spread in enumerate(rps):
        left.annotate(f"{spread.median:,.0f}", (index, spread.median), ha="center", va="bottom")
    width = 0.38
    for offset, key in ((-width / 2, "p50_ms"), (width / 2, "p99_ms")):
        values = [summary["single_connection"][n][key] for n in names]
        xs = [i + offset for i in range(len(names))]
        middle.bar(xs, [v.median for v in values], width, label=key.replace("_ms", ""), alpha=0.85)
        middle.errorbar(xs, [v.median for v in values], yerr=_yerr(values), fmt="none", ecolor="black", capsize=3)
    middle.set_xticks(range(len(names)), names)
    middle.set_yscale("log")
    middle.set_ylabel("latency, ms (log scale)")
    middle.set_title("One connection: request latency")
    middle.legend()
    for name in names:
        points = [
            (float(rate), by_name[name]) for rate, by_name in summary["open_loop"].items() if by_name[name]["reachable"]
        ]
        if not points:
            continue
        xs = [p[0] for p in points]
        right.plot(xs, [p[1]["p50_ms"].median for p in points], "o-", color=colors.get(name), label=f"{name} p50")
        right.plot(xs, [p[1]["p99_ms"].median for p in points], "s--", color=colors.get(name), label=f"{name} p99")
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xlabel("offered load, requests/s (open loop)")
    right.set_ylabel("latency from scheduled send, ms")
    right.set_title("Open-loop latency at fixed rates")
    right.legend(fontsize=8)
    mock = summary["settings"]["mock"]
    figure.suptitle(
        f"Scenario 1 - non-streaming gateway overhead ({mock} mock upstream, 2 shared cores; median over reps)"
    )
    report.save_plot(figure, scenario, publish)
    plt.close(figure)


def _yerr(spreads: list[Spread]) -> list[list[float]]:
    return [[s.median - s.low for s in spreads], [s.high - s.median for s in spreads]]


def main(argv: list[str] | None = None) -> None:
    parser = common_parser(__doc__.split("\n\n")[0], duration_s=5, reps=3)
    parser.add_argument("--connections", type=int, default=32, help="wrk connections for saturation")
    parser.add_argument("--rates", default="100,500,1000", help="open-loop rates, requests/s (comma-separated)")
    parser.add_argument("--contenders", default="direct,modelyard,litellm")
    parser.add_argument("--gateway-arg", action="append", default=[], help="extra flag for the modelyard gateway")
    parser.add_argument("--baseline", help="also run the gateway of this git revision (before/after comparison)")
    parser.add_argument(
        "--mock", choices=("raw", "aiohttp"), default="raw", help="mock upstream: raw asyncio+httptools, or aiohttp"
    )
    parser.add_argument("--name", help="scenario name for the results and plot files (default: overhead[-MOCK-mock])")
    args = parser.parse_args(argv)
    raw = measure(args)
    summary = summarize(raw, args)
    show(summary, raw["names"])
    scenario = args.name or ("overhead" if args.mock == "raw" else f"overhead-{args.mock}-mock")
    plot(summary, raw["names"], args.publish, scenario)
    path = report.write_json(scenario, {"summary": summary, "runs": _runs_for_json(raw)})
    report.console().print(f"results: {path}")


def _runs_for_json(raw: dict[str, Any]) -> dict[str, Any]:
    """Per-repetition numbers (without the raw latency lists, which would make the file huge)."""
    open_runs = {
        rate: {
            name: [
                {
                    "achieved_rps": r.achieved_rps,
                    "p50_ms": percentile(r.latencies_ms, 50),
                    "p99_ms": percentile(r.latencies_ms, 99),
                    "errors": r.errors,
                }
                for r in runs
            ]
            for name, runs in by_name.items()
        }
        for rate, by_name in raw["open_loop"].items()
    }
    return {
        "saturation": {n: [asdict(r) | {"rps": r.rps} for r in v] for n, v in raw["saturation"].items()},
        "single_connection": {n: [asdict(r) for r in v] for n, v in raw["single"].items()},
        "open_loop": open_runs,
    }


if __name__ == "__main__":
    main()
