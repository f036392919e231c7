"""``modelyard eval …``: run suites through the gateway, compare runs, measure quantization quality.

Exit codes are for CI: 0 the suite passed its threshold, 1 it did not, 2 bad input (suite, dataset, target,
reference), 3 the gateway or database was unavailable or the run was aborted.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import aiohttp
import typer
from rich.table import Table

from modelyard import paths
from modelyard.cli.models import _actor, _err, _out, _print_json, _registry
from modelyard.cli.progress import build_progress
from modelyard.evals.client import GatewayClient, GatewayUnavailable, UnknownTarget
from modelyard.evals.compare import Comparison, compare_runs
from modelyard.evals.dataset import load_dataset
from modelyard.evals.perplexity import PerplexityError
from modelyard.evals.quant import measure, render_quant
from modelyard.evals.records import COMPLETE, RunRecord
from modelyard.evals.reports import write_reports
from modelyard.evals.runner import RunOptions, run_suite
from modelyard.evals.storage import EvalStore
from modelyard.evals.suite import LlmJudge, Suite, SuiteError, load_suite
from modelyard.registry.errors import RegistryError
from modelyard.registry.references import parse_ref
from modelyard.registry.store import RegistryStore

eval_app = typer.Typer(no_args_is_help=True, help="Evaluate models: task suites, run comparison, quantization quality.")

UrlOption = Annotated[
    str, typer.Option("--url", envvar="MODELYARD_URL", help="The modelyard gateway to evaluate through.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
ActorOption = Annotated[
    str | None, typer.Option("--actor", envvar="MODELYARD_ACTOR", help="Who is acting (default: user@host).")
]


@contextmanager
def _stores() -> Iterator[tuple[RegistryStore, EvalStore]]:
    with _registry() as (store, _checker):
        yield store, EvalStore(store.database)


def _fail(message: str, code: int) -> typer.Exit:
    _err().print(f"[bold red]error:[/] {message}", markup=True, highlight=False)
    return typer.Exit(code)


def normalise_target(target: str) -> str:
    """``name@3`` (MODEL@VERSION) means version 3, which the gateway calls ``name:3``; aliases stay as they are."""
    match = re.fullmatch(r"(.+)@(\d+)", target)
    return f"{match.group(1)}:{match.group(2)}" if match else target


@eval_app.command("run")
def run(
    suite_path: Annotated[Path, typer.Argument(metavar="SUITE", help="Suite YAML file.")],
    target: Annotated[
        str | None, typer.Option(help="ROUTE, NAME@ALIAS, NAME:N or NAME@N (what a client sends).")
    ] = None,
    url: UrlOption = "http://127.0.0.1:8080",
    concurrency: Annotated[int | None, typer.Option(min=1, help="Cases in flight (default: the suite's).")] = None,
    temperature: Annotated[float | None, typer.Option(help="Override the suite's temperature.")] = None,
    seed: Annotated[int | None, typer.Option(help="Override the suite's seed.")] = None,
    cached: Annotated[
        str | None, typer.Option(help="Re-score the outputs of this run; the model is not called.")
    ] = None,
    reports_dir: Annotated[Path | None, typer.Option(help="Where reports go (default: DATA_DIR/reports).")] = None,
    actor: ActorOption = None,
    as_json: JsonOption = False,
) -> None:
    """Run a suite against a target through the gateway; store it against the version that answered."""
    try:
        suite = load_suite(suite_path)
        dataset = load_dataset(suite)
    except SuiteError as exc:
        raise _fail(str(exc), 2) from None
    with _stores() as (store, evals):
        previous = evals.get_run(cached) if cached else None
        route = normalise_target(target or (previous.target if previous else ""))
        if not route:
            raise _fail("give --target ROUTE (or --cached RUN)", 2)
        options = RunOptions(route, url, _actor(actor), concurrency, temperature, seed, previous)
        _err().print(
            f"Suite [bold]{suite.name}[/]: {len(dataset.cases)} cases → {route} via {url}"
            + (f" (re-scoring {previous.run_id})" if previous else "")
        )
        try:
            record = asyncio.run(_execute(suite, dataset, url, options))
        except UnknownTarget as exc:
            raise _fail(str(exc), 2) from None
        except GatewayUnavailable as exc:
            raise _fail(str(exc), 3) from None
        if record.version is None:
            record = dataclasses.replace(record, version=_resolve_version(store, route))
        md, html = write_reports(record, reports_dir or paths.data_dir() / "reports")
        record = dataclasses.replace(record, report_path=str(html))
        if record.version is None:
            _err().print(f"[yellow]warning:[/] '{route}' is not a registry version; the run is stored unlinked")
        evals.save_run(record)
    if as_json:
        _print_json(record.to_json())
    else:
        _print_summary(record, md, html)
    if record.status != COMPLETE:
        raise _fail(f"run {record.run_id} aborted ({record.abort_reason}); stored as aborted, not complete", 3)
    raise typer.Exit(0 if record.threshold_met else 1)


async def _execute(suite: Suite, dataset, url: str, options: RunOptions) -> RunRecord:  # type: ignore[no-untyped-def]
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        client = GatewayClient(url, session, retries=suite.spec.defaults.retries)
        if options.cached is None:
            await client.check_target(options.target)
        judges = {
            a.judge or suite.spec.judge or options.target
            for a in _all_assertions(suite, dataset)
            if isinstance(a, LlmJudge)
        }
        for judge in sorted(judges):
            try:
                await client.check_target(judge)
            except UnknownTarget as exc:
                raise UnknownTarget(f"llm-judge route: {exc}") from None
        with build_progress(f"eval {suite.name}", _err()) as progress:
            return await run_suite(suite, dataset, client, options, progress)


def _all_assertions(suite: Suite, dataset) -> list:  # type: ignore[no-untyped-def]
    return [*suite.spec.assertions, *(a for case in dataset.cases for a in case.assertions)]


def _resolve_version(store: RegistryStore, route: str) -> str | None:
    try:
        return store.resolve(parse_ref(route)).key
    except (RegistryError, ValueError):
        return None


def _print_summary(record: RunRecord, md: Path, html: Path) -> None:
    s = record.summary
    table = Table(title=f"{record.run_id}: {record.suite} on {record.version or record.target}", title_justify="left")
    for column in ("Assertion", "Type", "Pass rate", "Mean score", "Errors"):
        table.add_column(column)
    for name, a in s["assertions"].items():
        table.add_row(
            name,
            a["type"],
            f"{a['pass_rate']:.1%} ({a['passed']}/{a['total']})",
            f"{a['mean_score']:.2f}",
            str(a["errors"]),
        )
    out = _out()
    out.print(table)
    verdict = "PASS" if record.threshold_met else "FAIL"
    out.print(
        f"{verdict}: {s['passed']}/{s['total']} cases passed ({s['pass_rate']:.1%}; threshold "
        f"{record.pass_threshold:.0%}); {s['errors']} errors; latency p50 {_ms(s['latency_ms']['p50'])} "
        f"p95 {_ms(s['latency_ms']['p95'])}; {s['tokens']['completion']} completion tokens; "
        f"temperature {record.temperature:g}, seed {record.seed}"
    )
    out.print(f"Report: {html}\nMarkdown: {md}")


def _ms(value: float | None) -> str:
    return f"{value:.0f} ms" if value is not None else "—"


@eval_app.command("compare")
def compare(
    run_a: Annotated[str, typer.Argument(metavar="RUN_A", help="Baseline run id (or prefix).")],
    run_b: Annotated[str, typer.Argument(metavar="RUN_B", help="Candidate run id (or prefix).")],
    alpha: Annotated[float, typer.Option(help="Significance level.")] = 0.05,
    as_json: JsonOption = False,
) -> None:
    """Compare two runs: per-assertion pass rates, flipped cases, McNemar's exact test, latency/token deltas."""
    with _stores() as (_store, evals):
        comparison = compare_runs(evals.get_run(run_a), evals.get_run(run_b), alpha)
    if as_json:
        _print_json(comparison.to_json())
        return
    _print_comparison(comparison)


def _print_comparison(c: Comparison) -> None:
    out = _out()
    table = Table(title=f"A = {c.a.run_id} ({c.a.version}), B = {c.b.run_id} ({c.b.version})", title_justify="left")
    for column in ("Assertion", "A pass rate", "B pass rate", "Δ"):
        table.add_column(column)
    table.add_row(
        "[bold]cases[/]", f"{c.a.pass_rate:.1%}", f"{c.b.pass_rate:.1%}", f"{c.b.pass_rate - c.a.pass_rate:+.1%}"
    )
    for name, ra, rb in c.assertions:
        delta = f"{rb - ra:+.1%}" if ra is not None and rb is not None else "—"
        table.add_row(name, _pct(ra), _pct(rb), delta)
    out.print(table)
    out.print(
        f"Paired cases: {c.paired}; flipped: {len(c.flipped)} ({c.test.only_a} pass→fail, "
        f"{c.test.only_b} fail→pass); McNemar exact p = {c.test.p_value:.4g} → {c.verdict()}"
    )
    for case_id, pa, pb in c.flipped:
        out.print(f"  {case_id}: {'pass' if pa else 'fail'} → {'pass' if pb else 'fail'}")
    if c.only_in_a or c.only_in_b:
        out.print(f"Unpaired cases: {len(c.only_in_a)} only in A, {len(c.only_in_b)} only in B")
    d = c.deltas()
    out.print(
        "Deltas (B - A): "
        + ", ".join(f"{k} {v:+.1f}" if isinstance(v, float) else f"{k} {v}" for k, v in d.items() if v is not None)
    )


def _pct(value: float | None) -> str:
    return f"{value:.1%}" if value is not None else "—"


@eval_app.command("show")
def show(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="Run id (or prefix).")],
    as_json: JsonOption = False,
) -> None:
    """Show a stored run (summary, report path; --json for every case)."""
    with _stores() as (_store, evals):
        record = evals.get_run(run_id)
    if as_json:
        _print_json(record.to_json())
        return
    html = Path(record.report_path) if record.report_path else Path("")
    _print_summary(record, html.with_suffix(".md"), html)


@eval_app.command("list")
def list_runs(
    model: Annotated[str | None, typer.Option(help="NAME or NAME:N.")] = None,
    suite: Annotated[str | None, typer.Option(help="Suite name.")] = None,
    limit: Annotated[int, typer.Option(min=1)] = 20,
    as_json: JsonOption = False,
) -> None:
    """List stored runs, newest first."""
    with _stores() as (_store, evals):
        runs = evals.list_runs(model, suite, limit)
    if as_json:
        _print_json([r.to_json(with_cases=False) for r in runs])
        return
    table = Table(title="Eval runs", title_justify="left")
    for column in ("Run", "Suite", "Version", "Status", "Pass rate", "Threshold", "Finished"):
        table.add_column(column)
    for r in runs:
        table.add_row(
            r.run_id,
            r.suite,
            r.version or r.target,
            r.status,
            f"{r.pass_rate:.1%}",
            f"{r.pass_threshold:.0%} {'met' if r.threshold_met else 'missed'}",
            r.finished_at.strftime("%Y-%m-%d %H:%M"),
        )
    _out().print(table)


@eval_app.command("quant")
def quant(
    base: Annotated[str, typer.Option(help="Base version: NAME:N, NAME@ALIAS or NAME.")],
    candidate: Annotated[str, typer.Option(help="Candidate version (the report is stored against it).")],
    text: Annotated[Path, typer.Option(help="A plain-text file of natural language (yours; nothing is downloaded).")],
    ctx_size: Annotated[int, typer.Option("--ctx-size", min=16, help="Tokens per chunk.")] = 512,
    chunks: Annotated[int, typer.Option(min=1, help="Chunks of the text to score.")] = 16,
    threads: Annotated[int | None, typer.Option(min=1, help="CPU threads (default: all).")] = None,
    actor: ActorOption = None,
    as_json: JsonOption = False,
) -> None:
    """Perplexity of base and candidate, PPL ratio, KL divergence and top-token agreement (llama-perplexity)."""
    from modelyard.engines.llamacpp_build import BuildError, ensure_engine
    from modelyard.engines.llamacpp_source import SourceError

    if not text.is_file():
        raise _fail(f"text file not found: {text}", 2)
    with _stores() as (store, evals):
        base_version = store.resolve(parse_ref(base))
        candidate_version = store.resolve(parse_ref(candidate))
        try:
            binary = ensure_engine(paths.cache_dir(), log=_err().print).binary("llama-perplexity")
            report = measure(
                binary,
                base_version,
                candidate_version,
                text,
                ctx_size,
                chunks,
                threads or os.cpu_count(),
                _actor(actor),
                log=_err().print,
            )
        except (PerplexityError, BuildError, SourceError, FileNotFoundError) as exc:
            raise _fail(str(exc), 2) from None
        evals.save_quant(report)
    if as_json:
        _print_json(report.to_json())
    else:
        sys.stdout.write(render_quant(report) + f"\n  stored against {report.candidate}\n")
