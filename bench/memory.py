"""Scenario 4 — memory: the gateway's resident set size (RSS) at idle and over a long load run.

The gateway (``bench.gateway_launcher``: modelyard's real gateway in front of the mock) is sampled once a second
from ``/proc``: first ``--idle`` seconds without traffic, then ``--duration`` seconds of mixed load — open-loop JSON
requests at ``--rate`` per second plus ``--streams`` concurrent streams — so every hot-path allocation (request
objects, upstream connections, SSE splitting, metrics children) is exercised many times. A leak shows as growth
over the load phase; "flat" means every sample after the warm-up (the first 10 % of the load) stays within ±5 % of
the first one. The engine's memory is the engine's business and is not counted here.

    bench/.venv/bin/python -m bench.memory --duration 600
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import uvloop

from bench import report
from bench.contenders import start_on_mock
from bench.httpclient import encode_request
from bench.load import concurrent_streams, open_loop
from bench.options import common_parser, run_dir
from bench.overhead import BODY, PATH
from bench.procs import Pinning, services
from bench.streaming import body as stream_body

TARGET_MB = 150.0
FLAT_TOLERANCE = 0.05


def rss_mb(pid: int) -> float:
    """The gateway's resident memory, with its children's (the record writer process, when the request log or
    request lines are on): what the gateway costs a machine."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024 + sum(rss_mb(child) for child in _children(pid))
    raise RuntimeError(f"no VmRSS for pid {pid}")


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as children:
            return [int(child) for child in children.read().split()]
    except OSError:
        return []


async def sample(pid: int, seconds: float, into: list[tuple[float, float]], start: float) -> None:
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        into.append((time.perf_counter() - start, rss_mb(pid)))
        await asyncio.sleep(1.0)


async def load_phase(port: int, args: Any, samples: list[tuple[float, float]], start: float, pid: int) -> dict:
    host = f"127.0.0.1:{port}"
    json_raw = encode_request("POST", PATH, host, BODY)
    stream_raw = encode_request("POST", "/v1/chat/completions", host, stream_body(32))
    sampler = asyncio.ensure_future(sample(pid, args.duration, samples, start))
    requests, streams = await asyncio.gather(
        open_loop("127.0.0.1", port, json_raw, args.rate, args.duration),
        concurrent_streams("127.0.0.1", port, [stream_raw], args.streams, args.duration, stagger_s=1.6),
    )
    await sampler
    return {
        "json_requests_ok": requests.ok,
        "json_errors": requests.errors,
        "streams_completed": streams.requests,
        "stream_errors": streams.errors,
    }


def measure(args: Any) -> dict[str, Any]:
    pinning = Pinning.named(args.pin)
    pinning.pin_self()
    logs = run_dir("memory")
    with services() as started:
        endpoints = start_on_mock(started, logs, pinning, ["modelyard"], args.gateway_arg, token_rate=20, tokens=32)
        gateway = endpoints["modelyard"]
        assert gateway.service is not None
        pid = gateway.service.pid  # the launcher's own process is the gateway (no wrapper process)
        start = time.perf_counter()
        idle: list[tuple[float, float]] = []
        uvloop.run(sample(pid, args.idle, idle, start))
        load: list[tuple[float, float]] = []
        traffic = uvloop.run(load_phase(gateway.port, args, load, start, pid))
        after = rss_mb(pid)
    return {"idle": idle, "load": load, "after_mb": after, "traffic": traffic}


def summarize(raw: dict[str, Any], args: Any) -> dict[str, Any]:
    idle = [mb for _, mb in raw["idle"]]
    load = [mb for _, mb in raw["load"]]
    warm = max(1, len(load) // 10)
    steady = load[warm:] or load
    first = steady[0]
    deviation = max(abs(mb - first) / first for mb in steady)
    summary = {
        "idle_mb": idle[-1],
        "load_start_mb": load[0],
        "steady_start_mb": first,
        "peak_mb": max(load),
        "end_mb": load[-1],
        "max_deviation_after_warmup": deviation,
        "flat": deviation <= FLAT_TOLERANCE,
        "traffic": raw["traffic"],
        "settings": {
            "idle_s": args.idle,
            "duration_s": args.duration,
            "rate": args.rate,
            "streams": args.streams,
            "gateway_args": args.gateway_arg,
        },
    }
    summary["targets"] = [
        {"target": "RSS <= 150 MB (peak)", "measured": summary["peak_mb"], "met": summary["peak_mb"] <= TARGET_MB},
        {"target": "RSS flat within +-5 % after warm-up", "measured": deviation * 100, "met": summary["flat"]},
    ]
    return summary


def show(summary: dict[str, Any]) -> None:
    out = report.console()
    rows = [
        ["idle (before load)", f"{summary['idle_mb']:.1f}"],
        ["first load sample", f"{summary['load_start_mb']:.1f}"],
        ["after warm-up (start of steady state)", f"{summary['steady_start_mb']:.1f}"],
        ["peak", f"{summary['peak_mb']:.1f}"],
        ["end", f"{summary['end_mb']:.1f}"],
        ["largest deviation after warm-up", f"{summary['max_deviation_after_warmup'] * 100:.2f} %"],
    ]
    out.print(report.table("Scenario 4 - gateway RSS, MB", ["moment", "RSS"], rows))
    traffic = summary["traffic"]
    out.print(
        f"traffic: {traffic['json_requests_ok']} JSON requests ({traffic['json_errors']} errors), "
        f"{traffic['streams_completed']} streams ({traffic['stream_errors']} errors)"
    )
    rows = [
        [t["target"], f"{t['measured']:.2f}", "[green]met[/]" if t["met"] else "[red]missed[/]"]
        for t in summary["targets"]
    ]
    out.print(report.table("Targets", ["target", "measured", ""], rows))


def plot(raw: dict[str, Any], summary: dict[str, Any], publish: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(10, 4.5))
    for phase, color in (("idle", "#7f7f7f"), ("load", "#2ca02c")):
        points = raw[phase]
        axis.plot([t for t, _ in points], [mb for _, mb in points], color=color, label=phase)
    base = summary["steady_start_mb"]
    axis.axhspan(base * (1 - FLAT_TOLERANCE), base * (1 + FLAT_TOLERANCE), color="#2ca02c", alpha=0.1, label="±5 %")
    axis.axhline(TARGET_MB, color="#d62728", linestyle="--", label="150 MB target")
    axis.set_ylim(0, max(TARGET_MB * 1.1, summary["peak_mb"] * 1.1))
    axis.set_xlabel("seconds")
    axis.set_ylabel("gateway RSS, MB")
    settings = summary["settings"]
    axis.set_title(
        f"Scenario 4 - gateway RSS: idle, then {settings['duration_s']:.0f} s of {settings['rate']:.0f} req/s "
        f"JSON + {settings['streams']} concurrent streams"
    )
    axis.grid(alpha=0.3)
    axis.legend(loc="lower right")
    report.save_plot(figure, "memory", publish)
    plt.close(figure)


def main(argv: list[str] | None = None) -> None:
    parser = common_parser(__doc__.split("\n\n")[0], duration_s=600, reps=1)
    parser.add_argument("--idle", type=float, default=10.0, help="seconds sampled before the load starts")
    parser.add_argument("--rate", type=float, default=300.0, help="open-loop JSON requests/s during the load")
    parser.add_argument("--streams", type=int, default=20, help="concurrent streams during the load")
    parser.add_argument("--gateway-arg", action="append", default=[], help="extra flag for the modelyard gateway")
    args = parser.parse_args(argv)
    raw = measure(args)
    summary = summarize(raw, args)
    show(summary)
    plot(raw, summary, args.publish)
    path = report.write_json("memory", {"summary": summary, "samples": {"idle": raw["idle"], "load": raw["load"]}})
    report.console().print(f"results: {path}")


if __name__ == "__main__":
    main()
