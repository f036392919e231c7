"""Routes: what each served id routes to (targets, weights, replicas with health, breaker state and in flight),
the engines behind them, and the deployments file's last reload and refusal."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from modelyard.api.console.context import Context, Page
from modelyard.api.console.html import badge, esc, facts, table


async def page(ctx: Context) -> Page:
    serving, problem = await ctx.attempt("/admin/serving")
    deployments, deployments_problem = await ctx.attempt("/admin/deployments")
    errors = tuple(p for p in (problem,) if p)
    sections = ["<h2>Served ids</h2>", _routes(serving["routes"] if serving else {})]
    if serving:
        sections += ["<h2>Engines</h2>", _engines(serving.get("engines", []), serving.get("retiring", []))]
    sections.append("<h2>Deployments file</h2>")
    if deployments_problem is not None:
        sections.append(f'<p class="muted">{esc(deployments_problem)}</p>')
    else:
        sections.append(_deployments(deployments))
    return Page("Routes", "routes", "".join(sections), errors=errors)


def _routes(routes: dict[str, Any]) -> str:
    rows: list[list[str]] = []
    for route, described in sorted(routes.items()):
        if not isinstance(described, dict):  # a registry id: one target, its version's engine
            rows.append([f"<code>{esc(route)}</code>", esc(described), "—", "—", "—", "—", "—"])
            continue
        for target, info in described.items():
            replicas = info.get("replicas", [])
            health = " ".join(
                badge(
                    r["name"] + (": ejected" if r.get("ejected") else (": ready" if r.get("ready") else ": down")),
                    "bad" if r.get("ejected") or not r.get("ready") else "ok",
                )
                for r in replicas
            ) or badge(info.get("unavailable") or "no replicas", "bad")
            breaker = ", ".join(
                f"{r['name']}: {'open' if r.get('ejected') else 'closed'} ({r.get('failures', 0)} failures)"
                for r in replicas
            )
            in_flight = sum(int(r.get("in_flight", 0)) for r in replicas)
            rows.append(
                [
                    f"<code>{esc(route)}</code>",
                    esc(info.get("serves")),
                    esc(target),
                    esc(f"{info.get('weight', 1):g}"),
                    health,
                    esc(breaker or "—"),
                    esc(in_flight),
                ]
            )
    return table(
        "What each served id routes to",
        ["Served id", "Serves", "Target", "Weight", "Replicas", "Breaker", "In flight"],
        rows,
        empty="Nothing is served.",
    )


def _engines(engines: list[dict[str, Any]], retiring: list[dict[str, Any]]) -> str:
    rows = [
        [
            esc(e.get("name")),
            badge("ready", "ok") if e.get("ready") else badge(str(e.get("state")), "bad"),
            esc(e.get("pid") or "—"),
            esc(e.get("active_requests", 0)),
            esc(e.get("restarts", 0)),
            esc("retiring" if e in retiring else "serving"),
            esc(e.get("failure") or "—"),
        ]
        for e in [*engines, *retiring]
    ]
    return table(
        "Supervised engines",
        ["Engine", "State", "PID", "In flight", "Restarts", "Role", "Failure"],
        rows,
        empty="No supervised engines.",
    )


def _when(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _deployments(deployments: dict[str, Any]) -> str:
    last_error = deployments.get("last_error")
    status = (
        f'<div class="error" role="alert"><p>Last reload refused: {esc(last_error)}</p></div>' if last_error else ""
    )
    return (
        status
        + facts(
            [
                ("File", deployments.get("path") or "none (routes come from the registry only)"),
                ("Applied at", _when(deployments.get("applied_at"))),
                ("Digest", deployments.get("digest")),
                ("Last error", last_error or "none"),
                ("Declared routes", ", ".join(deployments.get("routes", []))),
            ]
        )
        + "<details><summary>The file as applied</summary>"
        + f"<pre tabindex='0'>{esc(deployments.get('config', ''))}</pre></details>"
    )
