"""Overview: the live charts (drawn by ``assets/console.js`` from ``/console/overview/data``) and engine health."""

from __future__ import annotations

from modelyard.api.console.charts import ChartSource
from modelyard.api.console.context import Context, Page
from modelyard.api.console.html import badge, esc, table

CHART_TITLES = (
    ("requests", "Requests per second", "per route and version", "req/s"),
    ("errors", "Errors per second", "by error type", "err/s"),
    ("latency", "Latency", "p50 and p95 per route and version", "s"),
    ("ttft", "Time to first token", "p50 and p95 of streams", "s"),
    ("tokens", "Output tokens per second", "per route and version", "tok/s"),
    ("in_flight", "In flight", "requests in the gateway and engines, and the engines' queue", "requests"),
)


async def page(ctx: Context, charts: ChartSource) -> Page:
    figures = "".join(
        f'<figure class="chart-card" data-chart="{key}" data-unit="{esc(unit)}">'
        f'<figcaption><strong>{esc(title)}</strong> <span class="muted">{esc(what)}</span></figcaption>'
        f'<div class="chart" role="img" aria-label="{esc(title)} chart"></div>'
        f'<p class="latest" aria-live="off">Waiting for data…</p></figure>'
        for key, title, what, unit in CHART_TITLES
    )
    body = (
        f'<p class="source" id="chart-source" data-source="{esc(charts.kind)}">{esc(charts.describe())}</p>'
        '<p class="muted">Charts refresh every 5 s.</p>'
        f'<section class="charts" aria-label="Live charts" data-feed="/console/overview/data">{figures}</section>'
        f"<h2>Engines</h2>{await _engines(ctx)}"
    )
    head = (
        '<link rel="stylesheet" href="/console/assets/uPlot.min.css">'
        '<script src="/console/assets/uPlot.iife.min.js" defer></script>'
    )
    return Page("Overview", "overview", body, head=head)


async def _engines(ctx: Context) -> str:
    serving, problem = await ctx.attempt("/admin/serving")
    if problem is not None:
        return f'<p class="muted">{esc(problem)}</p>'
    rows = []
    for engine in serving.get("engines", []):
        state = badge("ready", "ok") if engine.get("ready") else badge(str(engine.get("state", "down")), "bad")
        rows.append(
            [
                esc(engine.get("name")),
                state,
                esc(engine.get("active_requests", 0)),
                esc(engine.get("restarts", 0)),
                esc(engine.get("failure") or "—"),
            ]
        )
    registry = serving.get("registry") or {}
    note = ""
    if registry and not registry.get("reachable", True):
        note = f'<p class="error" role="alert">Registry unreachable: {esc(registry.get("error"))}</p>'
    return note + table(
        "Engines this gateway supervises",
        ["Engine", "State", "In flight", "Restarts", "Failure"],
        rows,
        empty="No supervised engines (fixed upstreams).",
    )
