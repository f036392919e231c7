"""Cost of authentication and limits: the gateway with API keys required (peppered HMAC lookup in the key
snapshot, scope and model checks, request-shape limits, an in-memory rpm/tpm limiter charged and reconciled per
request, x-ratelimit headers), the same with a key without limits (auth only), and auth off, side by side.

    .venv/bin/python -m bench.auth_cost --duration 5 --reps 5
"""

from __future__ import annotations

from typing import Any

from bench import report
from bench.contenders import start_mock, start_modelyard
from bench.options import common_parser, run_dir
from bench.overhead import BODY, PATH
from bench.procs import Pinning, services
from bench.stats import Spread, ratio, rotated
from bench.wrk import WrkResult, run_wrk

KEY = "my-benchbenchbenchbenchbenchbenchbenchbenchben"


def measure(args: Any) -> dict[str, Any]:
    pinning = Pinning.named(args.pin)
    pinning.pin_self()
    logs = run_dir("auth")
    prefix = pinning.prefix(pinning.client)
    headers = {"Authorization": f"Bearer {KEY}"}
    with services() as started:
        mock = start_mock(logs, pinning)
        assert mock.service is not None
        started.append(mock.service)
        auth_args = ["--auth-key", KEY, "--security-db", str(logs / "security.db")]
        bare_args = ["--auth-key", KEY, "--security-db", str(logs / "security-nolimits.db"), "--auth-no-limits"]
        endpoints = {
            "auth": start_modelyard(logs, pinning, mock, auth_args, name="auth"),
            "auth-nolimits": start_modelyard(logs, pinning, mock, bare_args, name="auth-nolimits"),
            "noauth": start_modelyard(logs, pinning, mock, [], name="noauth"),
        }
        for endpoint in endpoints.values():
            assert endpoint.service is not None
            started.append(endpoint.service)
            run_wrk(endpoint.base + PATH, BODY, 8, 1, prefix=prefix, headers=headers)
        runs: dict[str, list[WrkResult]] = {name: [] for name in endpoints}
        single: dict[str, list[WrkResult]] = {name: [] for name in endpoints}
        for rep in range(args.reps):
            for name in rotated(list(endpoints), rep):
                url = endpoints[name].base + PATH
                result = run_wrk(url, BODY, args.connections, args.duration, prefix=prefix, headers=headers)
                runs[name].append(result)
                one = run_wrk(url, BODY, 1, args.duration, prefix=prefix, headers=headers)
                single[name].append(one)
                report.console().print(
                    f"[dim]rep {rep + 1} {name}: {result.rps:.0f} req/s ({result.errors} errors); "
                    f"1 connection p50 {one.p50_ms:.3f} ms p99 {one.p99_ms:.3f} ms[/]"
                )
    return {"runs": runs, "single": single}


def main(argv: list[str] | None = None) -> None:
    parser = common_parser(__doc__.split("\n\n")[0], duration_s=5, reps=5)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args(argv)
    measured = measure(args)
    runs, single = measured["runs"], measured["single"]
    rps = {name: Spread.of([r.rps for r in results]) for name, results in runs.items()}
    p50 = {name: Spread.of([r.p50_ms for r in results]) for name, results in single.items()}
    p99 = {name: Spread.of([r.p99_ms for r in results]) for name, results in single.items()}
    paired = Spread.of([ratio(a.rps, n.rps) for a, n in zip(runs["auth"], runs["noauth"], strict=True)])
    bare = Spread.of([ratio(a.rps, n.rps) for a, n in zip(runs["auth-nolimits"], runs["noauth"], strict=True)])
    added = Spread.of([a.p50_ms - n.p50_ms for a, n in zip(single["auth"], single["noauth"], strict=True)])
    out = report.console()
    rows = [
        [name, rps[name].fmt(0), p50[name].fmt(3), p99[name].fmt(3), str(sum(r.errors for r in runs[name]))]
        for name in runs
    ]
    headers = ["gateway", "req/s (32 conn)", "p50 ms (1 conn)", "p99 ms (1 conn)", "errors"]
    out.print(report.table("Cost of auth + limits (wrk, median (min-max))", headers, rows))
    out.print(f"auth+limits/noauth throughput: {paired.fmt(3, 'x')}; auth only/noauth: {bare.fmt(3, 'x')}; "
              f"added p50 at 1 connection (auth+limits): {added.fmt(3)} ms")  # fmt: skip
    results = {"machine": report.machine(), "rps": rps, "p50": p50, "p99": p99, "ratio": paired}
    results |= {"ratio_auth_only": bare, "added_p50": added, "settings": vars(args)}
    path = report.write_json("auth", results)
    out.print(f"results: {path}")


if __name__ == "__main__":
    main()
