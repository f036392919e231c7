"""Cost of watching: gateway throughput with metrics, JSON request log lines and the stored request log on,
against the same build with all three off, side by side in one run (issue target: under 5 % lower).

``--breakdown`` adds each observer on its own (metrics only, + lines, + request log). ``--control`` adds the
unwatched gateway beside ``bench.cpu_burner`` keeping busy the same share of a core as the record writer process
used in the previous watched run: the throughput this machine gives up to *any* process of that size, which
separates the writer's design from the machine's capacity. The record writer's own CPU per request is reported.

    bench/.venv/bin/python -m bench.observability_cost --duration 3 --reps 10 --breakdown --control
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import psutil

from bench import report
from bench.contenders import LITELLM_KEY, start_mock, start_modelyard
from bench.options import common_parser, run_dir
from bench.overhead import BODY, PATH
from bench.procs import Pinning, services
from bench.stats import Spread, ratio, rotated
from bench.wrk import WrkResult, run_wrk

TARGET_RATIO = 0.95
CONTROL = "unwatched + writer-sized CPU burner"


def measure(args: Any) -> dict[str, Any]:
    pinning = Pinning.named(args.pin)
    pinning.pin_self()
    logs = run_dir("observability")
    prefix = pinning.prefix(pinning.client)
    headers = {"Authorization": f"Bearer {LITELLM_KEY}"}
    with services() as started:
        mock = start_mock(logs, pinning)
        assert mock.service is not None
        started.append(mock.service)
        lines = ["--log-level", "info", "--log-format", "json", "--log-requests"]
        stored = ["--request-log", str(logs / "request-log.db")]
        variants = {"watched": lines + stored, "unwatched": ["--unobserved"]}
        if args.breakdown:  # each observer on its own, to see which one costs what
            variants |= {"metrics only": [], "metrics + lines": lines,
                         "metrics + request log": ["--request-log", str(logs / "request-log-only.db")]}  # fmt: skip
        endpoints = {name: start_modelyard(logs, pinning, mock, extra, name=name.replace(" ", "")) for name, extra
                     in variants.items()}  # fmt: skip
        for endpoint in endpoints.values():
            assert endpoint.service is not None
            started.append(endpoint.service)
            run_wrk(endpoint.base + PATH, BODY, 8, 1, prefix=prefix, headers=headers)
        names = [*endpoints, CONTROL] if args.control else list(endpoints)
        runs: dict[str, list[WrkResult]] = {name: [] for name in names}
        writer = _WriterCpu(endpoints["watched"].service.pid)  # type: ignore[union-attr]
        writer_share = 0.0
        for rep in range(args.reps):
            for name in rotated(names, rep):
                target = endpoints["unwatched" if name == CONTROL else name]
                with _burner(writer_share if name == CONTROL else 0.0, prefix), writer.during(name == "watched"):
                    result = run_wrk(target.base + PATH, BODY, args.connections, args.duration, prefix=prefix,
                                     headers=headers)  # fmt: skip
                if name == "watched":
                    writer_share = writer.share()
                    writer.per_request.append(writer.last_s / max(1, result.requests) * 1e6)
                runs[name].append(result)
                report.console().print(f"[dim]rep {rep + 1} {name}: {result.rps:.0f} req/s, {result.errors} errors[/]")
    return {"runs": runs, "writer_us_per_request": writer.per_request, "writer_share": writer.shares}


class _WriterCpu:
    """CPU time of the record writer process (the watched gateway's child) over one measurement."""

    def __init__(self, gateway_pid: int) -> None:
        self._gateway = psutil.Process(gateway_pid)
        self.last_s = 0.0
        self.elapsed_s = 0.0
        self.per_request: list[float] = []
        self.shares: list[float] = []

    def _cpu_s(self) -> float:
        return sum(sum(child.cpu_times()[:2]) for child in self._gateway.children())

    @contextlib.contextmanager
    def during(self, active: bool) -> Iterator[None]:
        if not active:
            yield
            return
        cpu, started = self._cpu_s(), time.perf_counter()
        yield
        self.last_s, self.elapsed_s = self._cpu_s() - cpu, time.perf_counter() - started
        self.shares.append(self.share())

    def share(self) -> float:
        return self.last_s / self.elapsed_s if self.elapsed_s else 0.0


@contextlib.contextmanager
def _burner(share: float, prefix: list[str]) -> Iterator[None]:
    if share <= 0.001:
        yield
        return
    share = min(share, 0.95)
    burner = subprocess.Popen([*prefix, sys.executable, "-m", "bench.cpu_burner", "--share", f"{share:.3f}"])
    try:
        time.sleep(0.2)
        yield
    finally:
        burner.kill()
        burner.wait()


def main(argv: list[str] | None = None) -> None:
    parser = common_parser(__doc__.split("\n\n")[0], duration_s=5, reps=5)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--breakdown", action="store_true", help="also run metrics only, + lines, + request log")
    parser.add_argument(
        "--control",
        action="store_true",
        help="also run the unwatched gateway beside a process burning as much CPU as the record writer used",
    )
    args = parser.parse_args(argv)
    measured = measure(args)
    runs = measured["runs"]
    writer_us = Spread.of(measured["writer_us_per_request"])
    writer_share = Spread.of(measured["writer_share"])
    rps = {name: Spread.of([r.rps for r in results]) for name, results in runs.items()}
    ratios = {
        name: Spread.of([ratio(w.rps, u.rps) for w, u in zip(results, runs["unwatched"], strict=True)])
        for name, results in runs.items()
        if name != "unwatched"
    }
    paired = ratios["watched"]
    out = report.console()
    rows = [
        [
            name,
            rps[name].fmt(0),
            ratios[name].fmt(3, "x") if name in ratios else "1",
            str(sum(r.errors for r in runs[name])),
        ]
        for name in runs
    ]
    title = "Cost of watching (wrk saturation, median (min-max); ratio paired per repetition)"
    out.print(report.table(title, ["gateway", "req/s", "vs unwatched", "errors"], rows))
    out.print(f"record writer process: {writer_us.fmt(1, ' µs')} of CPU a request, {writer_share.fmt(2)} of a core")
    verdict = "[green]met[/]" if paired.median >= TARGET_RATIO else "[red]missed[/]"
    out.print(f"watched/unwatched throughput: {paired.fmt(3, 'x')}  (target ≥ {TARGET_RATIO}x): {verdict}")
    path = report.write_json(
        "observability",
        {
            "machine": report.machine(),
            "rps": rps,
            "ratio": paired,
            "ratios": ratios,
            "writer_us_per_request": writer_us,
            "writer_core_share": writer_share,
            "settings": vars(args),
            "target": TARGET_RATIO,
        },
    )
    out.print(f"results: {path}")


if __name__ == "__main__":
    main()
