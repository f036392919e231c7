"""Gateway workers on one host: ``modelyard gateway --workers 2`` against ``--workers 1``, paired in one run.

Both stand in front of the same mock upstream (a deployments route to it), with auth off and a private SQLite
database each. The contenders are interleaved (the order rotates every repetition), each saturated by ``wrk``;
beside requests/s and latency the harness reports the CPU seconds each process used during the measurements (the
supervisor, every worker, the mock): on a 2-core machine the second worker competes with wrk and the mock for the
same two cores, so the gain is bounded, and the CPU column shows where the time went.

    .venv/bin/python -m bench.workers --duration 5 --reps 3
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import psutil

from bench import report
from bench.contenders import MOCK_MODEL, Endpoint, start_mock
from bench.options import common_parser, run_dir
from bench.overhead import BODY, PATH
from bench.procs import PRODUCT_PYTHON, Pinning, Service, free_port, services
from bench.stats import Spread, ratio, rotated
from bench.wrk import WrkResult, run_wrk


def start_workers(log_dir: Path, pinning: Pinning, mock: Endpoint, workers: int) -> Endpoint:
    name = f"workers-{workers}"
    data = log_dir / name
    data.mkdir(parents=True, exist_ok=True)
    config = data / "deployments.yaml"
    config.write_text(f"routes:\n  {MOCK_MODEL}:\n    targets:\n      mock: {{url: '{mock.base}/v1'}}\n")
    port = free_port()
    command = [
        *pinning.prefix(pinning.servers),
        str(PRODUCT_PYTHON),
        *("-m", "modelyard", "gateway", "--port", str(port), "--workers", str(workers)),
        *("--config", str(config), "--log-level", "warning"),
    ]
    env = {"MODELYARD_DATA_DIR": str(data), "MODELYARD_AUTH": "off"}
    env["MODELYARD_DATABASE_URL"] = f"sqlite:///{data / 'modelyard.db'}"
    service = Service(name, command, f"http://127.0.0.1:{port}/ready", log_dir, env=env)
    service.wait_ready(120)
    return Endpoint(name, port, service)


def cpu_seconds(pid: int) -> dict[str, float]:
    """User + system CPU seconds of a gateway's processes: the one started (``main``: with one worker it is the
    gateway itself, with more the supervisor), each spawned worker, and their helpers summed (the request-log
    writer each gateway process runs, multiprocessing's resource tracker)."""
    found: dict[str, float] = {}
    try:
        root = psutil.Process(pid)
        workers = 0
        for process in [root, *root.children(recursive=True)]:
            times = process.cpu_times()
            if process.pid == pid:
                label = "main"
            elif "spawn_main" in " ".join(process.cmdline()):
                workers += 1
                label = f"worker {workers}"
            else:
                label = "helpers"
            found[label] = found.get(label, 0.0) + times.user + times.system
    except psutil.NoSuchProcess:
        pass
    return found


def measure(args: Any) -> dict[str, Any]:
    pinning = Pinning.named(args.pin)
    pinning.pin_self()
    logs = run_dir("workers")
    prefix = pinning.prefix(pinning.client)
    with services() as started:
        mock = start_mock(logs, pinning)
        assert mock.service is not None
        started.append(mock.service)
        endpoints: dict[str, Endpoint] = {}
        for count in (1, 2):
            endpoint = start_workers(logs, pinning, mock, count)
            assert endpoint.service is not None
            started.append(endpoint.service)
            endpoints[endpoint.name] = endpoint
            run_wrk(endpoint.base + PATH, BODY, 8, 1, prefix=prefix)  # warm-up
        runs: dict[str, list[WrkResult]] = {name: [] for name in endpoints}
        cpu: dict[str, dict[str, float]] = {name: {} for name in endpoints}
        mock_cpu: dict[str, float] = dict.fromkeys(endpoints, 0.0)
        for rep in range(args.reps):
            for name in rotated(list(endpoints), rep):
                service = endpoints[name].service
                assert service is not None
                before, mock_before = cpu_seconds(service.pid), cpu_seconds(mock.service.pid)["main"]
                result = run_wrk(endpoints[name].base + PATH, BODY, args.connections, args.duration, prefix=prefix)
                after, mock_after = cpu_seconds(service.pid), cpu_seconds(mock.service.pid)["main"]
                for label, seconds in after.items():
                    cpu[name][label] = cpu[name].get(label, 0.0) + seconds - before.get(label, 0.0)
                mock_cpu[name] += mock_after - mock_before
                runs[name].append(result)
                report.console().print(f"[dim]rep {rep + 1} {name}: {result.rps:.0f} req/s ({result.errors} errors)[/]")
    return {"runs": runs, "cpu": cpu, "mock_cpu": mock_cpu}


def main(argv: list[str] | None = None) -> None:
    parser = common_parser(__doc__.split("\n\n")[0], duration_s=5, reps=3)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args(argv)
    measured = measure(args)
    runs, cpu, mock_cpu = measured["runs"], measured["cpu"], measured["mock_cpu"]
    rps = {name: Spread.of([r.rps for r in results]) for name, results in runs.items()}
    p50 = {name: Spread.of([r.p50_ms for r in results]) for name, results in runs.items()}
    gain = Spread.of([ratio(two.rps, one.rps) for one, two in zip(runs["workers-1"], runs["workers-2"], strict=True)])
    out = report.console()
    wall = args.duration * args.reps
    rows = []
    for name, results in runs.items():
        processes = ", ".join(f"{label} {seconds / wall:.2f}" for label, seconds in sorted(cpu[name].items()))
        requests = sum(r.requests for r in results)
        total = sum(cpu[name].values())
        rows.append(
            [
                name,
                rps[name].fmt(0),
                p50[name].fmt(2),
                str(sum(r.errors for r in results)),
                processes,
                f"{mock_cpu[name] / wall:.2f}",
                f"{1000 * total / requests:.2f}" if requests else "-",
            ]
        )
    headers = ["gateway", "req/s", "p50 ms", "errors", "CPU cores used, per process", "mock cores", "CPU ms/req"]
    out.print(
        report.table(f"--workers 2 vs --workers 1 ({args.connections} connections, median (min-max))", headers, rows)
    )
    out.print(f"workers 2 / workers 1 throughput (paired per repetition): {gain.fmt(3, 'x')} on {os.cpu_count()} cores")
    results = {"machine": report.machine(), "rps": rps, "p50": p50, "gain": gain, "cpu_s": cpu, "mock_cpu_s": mock_cpu}
    path = report.write_json("workers", results | {"settings": vars(args)})
    out.print(f"results: {path}")


if __name__ == "__main__":
    main()
