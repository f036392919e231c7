"""Instructions and system calls per request: what each gateway feature costs, counted instead of timed.

CPU time per request (``bench.cpu_cost``) is the kernel's accounting, and on a shared 2-core machine it moves by
tens of microseconds between repetitions of the same variant (cache and core contention make the same code take
more cycles). Instruction counts do not move: each variant's gateway runs under valgrind's callgrind with
instrumentation off (so start-up is only a few times slower), is warmed up, then instrumentation is switched on
for exactly ``--requests`` requests (``callgrind_control -i on``, then ``--dump``); the dump's total of executed
user-space instructions, less an idle window of the same length (timer-driven background work), divided by the
requests is the cost. Separately, each variant runs natively with
``strace -c -f`` attached for the same number of requests: system calls per request, which is where most of the
remaining time goes (a loopback write also does the receiver's TCP work, charged to the writer).

Counted: the gateway process, all its threads. Not counted: the record writer child (valgrind does not follow
children; its CPU is in ``bench.cpu_cost``), and the kernel's own instructions (only the number of system calls).
``perf stat`` would count both, but the VM's PMU is not exposed (``<not supported>``).

    nice .venv/bin/python -m bench.instr_cost --requests 400 --baseline main
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import uvloop

from bench import report
from bench.contenders import Endpoint, export_source, start_mock
from bench.cpu_cost import KEY, fixed_requests, variants
from bench.httpclient import encode_request
from bench.options import run_dir
from bench.overhead import BODY, PATH
from bench.procs import PRODUCT_PYTHON, REPO, Pinning, Service, free_port, services

DEFAULT_VARIANTS = "all off,auth+limits,metrics,watched,all on"
FEATURES = {  # feature: (variant with it, variant without it)
    "auth+limits": ("auth+limits", "all off"),
    "metrics": ("metrics", "all off"),
    "watching": ("watched", "all off"),
    "everything": ("all on", "all off"),
}
_TOTALS = re.compile(rb"^(?:summary|totals):\s+(\d+)", re.MULTILINE)


def _gateway(logs: Path, mock: Endpoint, name: str, extra: list[str], source: Path | None, valgrind: bool) -> Service:
    port = free_port()
    slug = re.sub(r"[^a-z0-9]+", "-", name)
    wrapper = []
    if valgrind:
        out = logs / f"callgrind.{slug}.out"
        wrapper = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}"]
    command = [*wrapper, str(PRODUCT_PYTHON), "-m", "bench.gateway_launcher", "--port", str(port),
               "--upstream", mock.base, "--model", "mock-model", *extra]  # fmt: skip
    env = {"PYTHONPATH": f"{source / 'src'}:{source}"} if source else None
    service = Service(f"{slug}{'-cg' if valgrind else ''}", command, f"http://127.0.0.1:{port}/ready", logs, env,
                      cwd=source or REPO)  # fmt: skip
    service.port = port  # type: ignore[attr-defined]
    service.wait_ready(900 if valgrind else 60)
    return service


def instructions(service: Service, raw: bytes, requests: int, warm: int) -> tuple[float, float]:
    """(instructions per request, background instructions per second) of ``service``, started under callgrind
    with instrumentation off.

    Background work (the key snapshot poller, the spend writer, metric history) runs on wall-clock timers, and
    under callgrind the requests take ~50x longer, so it would be charged to them ~50x over. It is counted apart:
    after the requests, an idle window of the same length is counted and subtracted; its rate per second is
    reported beside (natively it is spread over ~50x more requests)."""
    port: int = service.port  # type: ignore[attr-defined]
    uvloop.run(fixed_requests(port, raw, warm, 4))
    _control(service.pid, "--instr=on")
    _control(service.pid, "--zero")
    started = time.monotonic()
    ok, _ = uvloop.run(fixed_requests(port, raw, requests, 4))
    elapsed = time.monotonic() - started
    busy = _dump(service, "requests")
    _control(service.pid, "--zero")
    time.sleep(elapsed)
    idle = _dump(service, "idle")
    _control(service.pid, "--instr=off")
    return (busy - idle) / max(ok, 1), idle / elapsed


def _dump(service: Service, label: str) -> int:
    before = set(service.log_path.parent.glob("callgrind.*"))
    _control(service.pid, f"--dump={label}")
    dumps = sorted(set(service.log_path.parent.glob("callgrind.*")) - before, key=lambda p: p.stat().st_mtime)
    if not dumps:
        raise RuntimeError(f"callgrind wrote no dump for {service.name}")
    found = _TOTALS.search(dumps[-1].read_bytes())
    if found is None:
        raise RuntimeError(f"no totals in {dumps[-1]}")
    return int(found.group(1))


def _control(pid: int, action: str) -> None:
    subprocess.run(["callgrind_control", action, str(pid)], check=True, capture_output=True, timeout=300)


def syscalls(service: Service, raw: bytes, requests: int, warm: int) -> dict[str, float]:
    """System calls per request (all threads), by name, from ``strace -c -f`` attached for ``requests``."""
    port: int = service.port  # type: ignore[attr-defined]
    uvloop.run(fixed_requests(port, raw, warm, 4))
    out = service.log_path.with_suffix(".strace")
    tracer = subprocess.Popen(["strace", "-c", "-f", "-q", "-o", str(out), "-p", str(service.pid)])
    time.sleep(1.0)  # attached to every thread
    ok, _ = uvloop.run(fixed_requests(port, raw, requests, 4))
    tracer.send_signal(signal.SIGINT)
    tracer.wait(30)
    counts: dict[str, float] = {}
    for line in out.read_text().splitlines():
        fields = line.split()
        if len(fields) >= 5 and fields[0][0].isdigit() and fields[-1] != "total":
            counts[fields[-1]] = int(fields[3]) / max(ok, 1)
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def measure(args: Any) -> dict[str, Any]:
    logs = run_dir("instr_cost")
    wanted = [n.strip() for n in args.variants.split(",") if n.strip()]
    table = variants(logs)
    runs: list[tuple[str, list[str], Path | None]] = [(n, table[n], None) for n in wanted]
    if args.baseline:
        source = export_source(args.baseline, logs.parent)
        base = [n.strip() for n in args.baseline_variants.split(",") if n.strip()]
        runs += [(f"{n} @{args.baseline}", table[n], source) for n in base]
    results: dict[str, Any] = {}
    with services() as started:
        mock = start_mock(logs, Pinning())
        assert mock.service is not None
        started.append(mock.service)
        headers = {"Authorization": f"Bearer {KEY}"}
        for name, extra, source in runs:
            entry: dict[str, Any] = {}
            for valgrind in (False, True) if args.syscalls else (True,):
                service = _gateway(logs, mock, name, extra, source, valgrind)
                started.append(service)
                raw = encode_request("POST", PATH, f"127.0.0.1:{service.port}", BODY, headers)  # type: ignore[attr-defined]
                if valgrind:
                    entry["instructions"], entry["background_per_s"] = instructions(
                        service, raw, args.requests, args.warm
                    )
                else:
                    entry["syscalls"] = syscalls(service, raw, args.requests * 5, args.warm)
                service.stop()
                started.remove(service)
            results[name] = entry
            calls = sum(entry.get("syscalls", {}).values())
            line = f"{name}: {entry['instructions'] / 1e3:.1f} k instructions, {calls:.2f} system calls a request"
            report.console().print(f"[dim]{line}[/]")
    return results


def summarize(results: dict[str, Any]) -> dict[str, Any]:
    instr = {name: entry["instructions"] for name, entry in results.items()}
    features = {}
    for feature, (with_it, without) in FEATURES.items():
        if with_it in instr and without in instr:
            features[feature] = instr[with_it] - instr[without]
    for label in instr:
        name, _, revision = label.partition(" @")
        if revision and name in instr:
            features[f"{name}: now - {revision}"] = instr[name] - instr[label]
    calls = {name: sum(entry["syscalls"].values()) for name, entry in results.items() if "syscalls" in entry}
    background = {name: entry["background_per_s"] for name, entry in results.items()}
    return {"instructions": instr, "feature_instructions": features, "syscalls": calls,
            "background_per_s": background, "runs": results}  # fmt: skip


def show(summary: dict[str, Any]) -> None:
    out = report.console()
    rows = [[name, f"{value / 1e3:,.1f} k", f"{summary['syscalls'].get(name, float('nan')):.2f}",
             f"{summary['background_per_s'][name] / 1e6:,.2f} M"]
            for name, value in summary["instructions"].items()]  # fmt: skip
    out.print(report.table("Per request: gateway instructions (callgrind), system calls (strace)",
                           ["variant", "instructions", "syscalls", "background instr/s"], rows))  # fmt: skip
    rows = [[name, f"{value / 1e3:+,.1f} k"] for name, value in summary["feature_instructions"].items()]
    out.print(report.table("What each feature adds (instructions per request)", ["feature", "instructions"], rows))


def plot(summary: dict[str, Any], publish: bool) -> None:
    """Instructions per request per variant (bars) with system calls per request written beside each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(summary["instructions"])
    values = [summary["instructions"][n] / 1e3 for n in names]
    figure, axis = plt.subplots(figsize=(10, 0.5 * len(names) + 1.5))
    axis.barh(names, values, color=["#d62728" if "@" in n else "#2ca02c" for n in names])
    for index, name in enumerate(names):
        calls = summary["syscalls"].get(name)
        text = f"  {values[index]:,.0f} k" + (f", {calls:.2f} syscalls" if calls is not None else "")
        axis.annotate(text, (values[index], index), va="center", fontsize=8)
    axis.invert_yaxis()
    axis.set_xlabel("thousand user-space instructions per request, gateway process (callgrind; background subtracted)")
    axis.set_title("bench.instr_cost: counted, not timed (red: the baseline revision)")
    figure.tight_layout()
    report.save_plot(figure, "instr_cost", publish)
    plt.close(figure)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=400, help="requests counted per variant")
    parser.add_argument("--warm", type=int, default=300, help="requests before counting (imports, caches, pools)")
    parser.add_argument("--variants", default=DEFAULT_VARIANTS, help="comma-separated, from bench.cpu_cost's table")
    parser.add_argument("--baseline", help="also count these variants at this git revision (before/after)")
    parser.add_argument("--baseline-variants", default="all off,all on")
    parser.add_argument("--no-syscalls", dest="syscalls", action="store_false", help="skip the strace pass")
    parser.add_argument("--publish", action="store_true", help="also write the plot to docs/bench/")
    parser.add_argument("--from-json", type=Path, help="only show and plot an earlier run's results file")
    args = parser.parse_args(argv)
    if args.from_json:
        summary = json.loads(args.from_json.read_text())["summary"]
        show(summary)
        plot(summary, args.publish)
        return
    os.environ.setdefault("PYTHONHASHSEED", "0")  # the same hashing work in every run
    summary = summarize(measure(args))
    show(summary)
    plot(summary, args.publish)
    path = report.write_json("instr_cost", {"summary": summary, "settings": vars(args)})
    report.console().print(f"results: {path}")


if __name__ == "__main__":
    main()
