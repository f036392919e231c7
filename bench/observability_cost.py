"""Cost of watching: gateway throughput with metrics, JSON request log lines and the stored request log on,
against the same build with all three off, side by side in one run (issue target: under 5 % lower).

    bench/.venv/bin/python -m bench.observability_cost --duration 5 --reps 5
"""

from __future__ import annotations

from typing import Any

from bench import report
from bench.contenders import LITELLM_KEY, start_mock, start_modelyard
from bench.options import common_parser, run_dir
from bench.overhead import BODY, PATH
from bench.procs import Pinning, services
from bench.stats import Spread, ratio, rotated
from bench.wrk import WrkResult, run_wrk

TARGET_RATIO = 0.95


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
        runs: dict[str, list[WrkResult]] = {name: [] for name in endpoints}
        for rep in range(args.reps):
            for name in rotated(list(endpoints), rep):
                result = run_wrk(endpoints[name].base + PATH, BODY, args.connections, args.duration, prefix=prefix,
                                 headers=headers)  # fmt: skip
                runs[name].append(result)
                report.console().print(f"[dim]rep {rep + 1} {name}: {result.rps:.0f} req/s, {result.errors} errors[/]")
    return {"runs": runs}


def main(argv: list[str] | None = None) -> None:
    parser = common_parser(__doc__.split("\n\n")[0], duration_s=5, reps=5)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--breakdown", action="store_true", help="also run metrics only, + lines, + request log")
    args = parser.parse_args(argv)
    runs = measure(args)["runs"]
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
    verdict = "[green]met[/]" if paired.median >= TARGET_RATIO else "[red]missed[/]"
    out.print(f"watched/unwatched throughput: {paired.fmt(3, 'x')}  (target ≥ {TARGET_RATIO}x): {verdict}")
    path = report.write_json(
        "observability",
        {
            "machine": report.machine(),
            "rps": rps,
            "ratio": paired,
            "ratios": ratios,
            "settings": vars(args),
            "target": TARGET_RATIO,
        },
    )
    out.print(f"results: {path}")


if __name__ == "__main__":
    main()
