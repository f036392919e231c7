"""CPU time per request, from the kernel's accounting: what each gateway feature costs, in microseconds.

Wall-clock throughput on a shared 2-core machine moves with whatever else runs; the CPU time the kernel charges to
the gateway process (and to its record writer child) per request does much less. Each variant is a gateway
(``bench/gateway_launcher.py``) in front of the fast raw mock; each measurement sends a fixed number of requests
(``--requests``, closed loop, ``--connections`` at a time, the lean client of ``bench/httpclient.py``) and reads
``utime + stime`` from ``/proc/PID/stat`` of the gateway and of each of its children before and after. The
variants run interleaved (order rotated per repetition), each ``--reps`` times; the table shows the median and the
range. A feature's cost is the paired difference to the variant without it, repetition by repetition:

- ``auth+limits`` = (keys required, one key with rpm/tpm limits charged in the in-memory limiter) - all off
- ``metrics`` = (Prometheus metrics only) - all off
- ``request lines`` = (metrics + a JSON log line per request) - metrics
- ``request log`` = (metrics + the stored request log, SQLite) - metrics
- ``watching`` = (metrics + lines + request log) - all off
- ``all on`` is the whole request with every feature on (what a user gets by default).

    nice .venv/bin/python -m bench.cpu_cost --requests 5000 --reps 5
    nice .venv/bin/python -m bench.cpu_cost --baseline main   # + "all off" and "all on" of main, same run
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from pathlib import Path
from typing import Any

import uvloop

from bench import report
from bench.contenders import Endpoint, export_source, start_mock, start_modelyard
from bench.httpclient import ConnectionPool, encode_request
from bench.options import run_dir
from bench.overhead import BODY, PATH
from bench.procs import Pinning, services
from bench.stats import Spread, rotated

KEY = "my-benchbenchbenchbenchbenchbenchbenchbenchben"
TICK_S = 1 / os.sysconf("SC_CLK_TCK")
TARGETS_US = {"auth+limits": 5.0, "watching": 8.0, "all on": 70.0}
DERIVED = {  # feature: (variant with it, variant without it)
    "auth+limits": ("auth+limits", "all off"),
    "metrics": ("metrics", "all off"),
    "request lines": ("metrics+lines", "metrics"),
    "request log": ("metrics+log", "metrics"),
    "watching": ("watched", "all off"),
    "everything": ("all on", "all off"),
}


def variants(logs: Path, granian: bool = False) -> dict[str, list[str]]:
    auth = ["--auth-key", KEY, "--security-db", str(logs / "security.db")]
    lines = ["--log-level", "info", "--log-format", "json", "--log-requests"]
    served_by_granian = {"all off granian": ["--unobserved", "--server", "granian"]} if granian else {}
    return {
        **served_by_granian,
        "all off": ["--unobserved"],
        "auth+limits": ["--unobserved", *auth],
        "metrics": [],
        "metrics+lines": lines,
        "metrics+log": ["--request-log", str(logs / "metrics-log.db")],
        "watched": [*lines, "--request-log", str(logs / "watched.db")],
        "all on": [*auth, *lines, "--request-log", str(logs / "all-on.db")],
    }


def process_cpu_s(pid: int) -> float:
    """utime + stime of ``pid`` and of every live child of it (the record writer), in seconds."""
    total = 0
    for one in [pid, *_children(pid)]:
        try:
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of proc(5))
    return total * TICK_S


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        found.extend(int(c) for c in children)
    return [*found, *(g for c in found for g in _children(c))]


async def fixed_requests(port: int, raw: bytes, count: int, connections: int) -> tuple[int, int]:
    """Send ``count`` requests, ``connections`` at a time; (answered 200, other answers or errors)."""
    pool = ConnectionPool("127.0.0.1", port)
    ok = failed = 0
    share = [count // connections + (1 if i < count % connections else 0) for i in range(connections)]

    async def worker(n: int) -> None:
        nonlocal ok, failed
        for _ in range(n):
            try:
                response = await pool.request(raw)
            except (OSError, ConnectionError):
                failed += 1
                continue
            if response.status == 200:
                ok += 1
            else:
                failed += 1

    await asyncio.gather(*(worker(n) for n in share))
    pool.close()
    return ok, failed


def measure(args: Any) -> dict[str, Any]:
    pinning = Pinning.named(args.pin)
    pinning.pin_self()
    logs = run_dir("cpu_cost")
    headers = {"Authorization": f"Bearer {KEY}"}
    per_request: dict[str, list[float]] = {}
    errors: dict[str, int] = {}
    with services() as started:
        mock = start_mock(logs, pinning)
        assert mock.service is not None
        started.append(mock.service)
        endpoints: dict[str, Endpoint] = {}
        for name, extra in variants(logs, args.granian).items():
            if args.only and name not in args.only.split(","):
                continue
            endpoints[name] = start_modelyard(logs, pinning, mock, extra, name=name.replace(" ", "-").replace("+", "_"))
            assert endpoints[name].service is not None
            started.append(endpoints[name].service)
            if args.baseline and name in args.baseline_variants.split(","):  # the same variant, earlier commit
                source = export_source(args.baseline, logs.parent)
                label = f"{name} @{args.baseline}"
                endpoints[label] = start_modelyard(logs, pinning, mock, extra, name=f"base-{len(endpoints)}",
                                                   source=source)  # fmt: skip
                started.append(endpoints[label].service)  # type: ignore[arg-type]
        raws = {n: encode_request("POST", PATH, f"127.0.0.1:{e.port}", BODY, headers) for n, e in endpoints.items()}
        for name, endpoint in endpoints.items():  # warm-up: imports, pools, caches, the writer's first batch
            uvloop.run(fixed_requests(endpoint.port, raws[name], args.requests // 4, args.connections))
        per_request = {name: [] for name in endpoints}
        errors = dict.fromkeys(endpoints, 0)
        for rep in range(args.reps):
            for name in rotated(list(endpoints), rep):
                pid = endpoints[name].service.pid  # type: ignore[union-attr]
                before = process_cpu_s(pid)
                ok, failed = uvloop.run(
                    fixed_requests(endpoints[name].port, raws[name], args.requests, args.connections)
                )
                if args.settle_s:
                    uvloop.run(asyncio.sleep(args.settle_s))  # the writer's last batch of this run is charged to it
                used = process_cpu_s(pid) - before
                per_request[name].append(used / max(ok, 1) * 1e6)
                errors[name] += failed
                report.console().print(f"[dim]rep {rep + 1} {name}: {per_request[name][-1]:.1f} µs/request[/]")
    return {"per_request_us": per_request, "errors": errors}


def summarize(measured: dict[str, Any]) -> dict[str, Any]:
    runs: dict[str, list[float]] = measured["per_request_us"]
    absolute = {name: Spread.of(values) for name, values in runs.items()}
    derived = {}
    for feature, (with_it, without) in DERIVED.items():
        if with_it in runs and without in runs:
            pairs = zip(runs[with_it], runs[without], strict=True)
            derived[feature] = Spread.of([a - b for a, b in pairs])
    for label in runs:  # before/after: the same variant now minus at the baseline revision, paired by repetition
        name, _, revision = label.partition(" @")
        if revision and name in runs:
            pairs = zip(runs[name], runs[label], strict=True)
            derived[f"{name}: now - {revision}"] = Spread.of([a - b for a, b in pairs])
    targets = []
    for name, target in TARGETS_US.items():
        spread = derived.get(name) if name != "all on" else absolute.get("all on")
        if spread is not None:
            targets.append({"target": f"{name} <= {target:g} µs", "measured": spread.median,
                            "met": spread.median <= target})  # fmt: skip
    return {"absolute_us": absolute, "feature_us": derived, "targets": targets, "errors": measured["errors"]}


def show(summary: dict[str, Any]) -> None:
    out = report.console()
    rows = [[name, spread.fmt(1), str(summary["errors"][name])] for name, spread in summary["absolute_us"].items()]
    out.print(
        report.table("CPU per request, gateway + writer (µs, median (min-max))", ["variant", "µs", "errors"], rows)
    )
    rows = [[name, spread.fmt(1)] for name, spread in summary["feature_us"].items()]
    out.print(report.table("What each feature costs (paired differences, µs)", ["feature", "µs"], rows))
    rows = [[t["target"], f"{t['measured']:.1f}", "[green]met[/]" if t["met"] else "[red]missed[/]"]
            for t in summary["targets"]]  # fmt: skip
    out.print(report.table("Targets", ["target", "measured", ""], rows))


def plot(summary: dict[str, Any], publish: bool) -> None:
    """Left: CPU per request of each variant (median, min-max bars); right: what each feature adds (paired)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(14, 4.8))
    for axis, spreads, title in (
        (left, summary["absolute_us"], "CPU per request, gateway + record writer"),
        (right, summary["feature_us"], "What each feature adds (paired difference)"),
    ):
        names = list(spreads)
        values = [spreads[n] for n in names]
        colors = ["#d62728" if "@" in n or "now -" in n else "#2ca02c" if "granian" not in n else "#ff7f0e"
                  for n in names]  # fmt: skip
        axis.barh(names, [v.median for v in values], color=colors)
        lows = [v.median - v.low for v in values]
        highs = [v.high - v.median for v in values]
        axis.errorbar([v.median for v in values], names, xerr=[lows, highs], fmt="none", ecolor="black", capsize=3)
        for index, value in enumerate(values):
            axis.annotate(f"  {value.median:.0f}", (max(value.high, 0), index), va="center", fontsize=8)
        axis.invert_yaxis()
        axis.axvline(0, color="black", linewidth=0.6)
        axis.set_xlabel("µs of CPU per request (kernel accounting), median and min-max over repetitions")
        axis.set_title(title)
    for name, value in TARGETS_US.items():
        axis, spreads = (left, summary["absolute_us"]) if name == "all on" else (right, summary["feature_us"])
        if name in spreads:
            axis.plot([value], [list(spreads).index(name)], "b|", markersize=16, markeredgewidth=2)
    figure.suptitle("bench.cpu_cost: fast raw mock upstream, 2 shared cores (blue | = the issue's target)")
    figure.tight_layout()
    report.save_plot(figure, "cpu_cost", publish)
    plt.close(figure)


def _loaded(path: Path) -> dict[str, Any]:
    summary: dict[str, Any] = json.loads(path.read_text())["summary"]
    for key in ("absolute_us", "feature_us"):
        summary[key] = {name: Spread(**spread) for name, spread in summary[key].items()}
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=5000, help="requests per measurement")
    parser.add_argument("--reps", type=int, default=5, help="repetitions (variants interleaved in each)")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--settle-s", type=float, default=0.3, help="wait after each run before reading the CPU")
    parser.add_argument("--only", default="", help="comma-separated variants to run (default: all)")
    parser.add_argument("--pin", choices=("none", "split"), default="none")
    parser.add_argument("--baseline", help="also run these variants of the gateway at this git revision (before/after)")
    parser.add_argument("--publish", action="store_true", help="also write the plot to docs/bench/")
    parser.add_argument("--granian", action="store_true", help="also the all-off gateway served by granian (ASGI)")
    parser.add_argument("--baseline-variants", default="all off,all on", help="comma-separated, with --baseline")
    parser.add_argument("--from-json", type=Path, help="only show and plot an earlier run's results file")
    args = parser.parse_args(argv)
    if args.from_json:
        summary = _loaded(args.from_json)
        show(summary)
        plot(summary, args.publish)
        return
    summary = summarize(measure(args))
    show(summary)
    plot(summary, args.publish)
    path = report.write_json("cpu_cost", {"summary": summary, "settings": vars(args)})
    report.console().print(f"results: {path}")


if __name__ == "__main__":
    main()
