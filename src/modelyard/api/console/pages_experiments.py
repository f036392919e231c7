"""Experiments: each one's arms, allocation and metrics, every treatment judged against the control since it
started (effect, interval, p- or e-value, verdict, the sample-ratio check), and stopping one with confirmation.

Read from and done through ``/admin/experiments`` (``api/experiments_admin.py``): the judgement shown is the one
the admin API computes when asked, from the request log, so the page and ``modelyard experiments show`` agree.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from modelyard.api.console.comparisons import comparison_table, sample_ratio
from modelyard.api.console.context import Context, Page
from modelyard.api.console.html import badge, csrf_field, esc, facts, link, table

_TONE = {"running": "ok", "stopped": "muted"}


def _path(name: str) -> str:
    return f"/console/experiments/{quote(name, safe='')}"


def _admin_path(name: str) -> str:
    return f"/admin/experiments/{quote(name, safe='')}"


def _arms(experiment: dict[str, Any]) -> str:
    arms = [experiment["control"], *experiment["treatments"]]
    shares = experiment.get("allocation") or []
    return ", ".join(
        f"{arm} ({share:g} %)" if isinstance(share, int | float) else str(arm)
        for arm, share in zip(arms, [*shares, *[None] * len(arms)], strict=False)
    )


async def experiments_section(ctx: Context) -> str:
    """The experiments table for the rollouts page (a failure to read them is shown in its place)."""
    experiments, problem = await ctx.attempt("/admin/experiments")
    if problem is not None:
        return f'<h2>Experiments</h2><p class="error" role="alert">{esc(problem)}</p>'
    rows = [
        [
            link(_path(e["name"]), e["name"]),
            f"<code>{esc(e['route'])}</code>",
            esc(_arms(e)),
            esc(e["primary"]),
            badge(e["state"], _TONE.get(e["state"], "")),
            esc(e["updated_at"]),
        ]
        for e in experiments["data"]
    ]
    return "<h2>Experiments</h2>" + table(
        "Experiments, newest first",
        ["Experiment", "Route", "Arms (allocation)", "Primary metric", "State", "Updated"],
        rows,
        empty="No experiments yet (modelyard experiments create FILE, or POST /admin/experiments).",
    )


async def detail(ctx: Context, name: str) -> Page:
    experiment = await ctx.get(_admin_path(name))
    guardrails = experiment.get("guardrails") or {}
    sections = [
        facts(
            [
                ("Route", experiment["route"]),
                ("Arms (allocation)", _arms(experiment)),
                ("Primary metric", experiment["primary"]),
                ("Guardrails (allowed change)", ", ".join(f"{k} {v:+g}" for k, v in guardrails.items()) or "—"),
                ("Minimum sample", experiment.get("min_sample")),
                ("Significance level", experiment.get("alpha")),
                ("State", experiment["state"]),
                ("Started", f"{experiment['created_at']} by {experiment['created_by']}"),
                ("Requests per arm", ", ".join(f"{k}: {v}" for k, v in (experiment.get("requests") or {}).items())),
            ]
        )
    ]
    if ctx.viewer.can_change and experiment["state"] == "running":
        sections.append(f'<p class="actions">{link(_path(name) + "/stop", "Stop…")}</p>')
    for result in experiment.get("results", []):
        comparisons = [c for c in (result.get("primary"), *result.get("guardrails", [])) if c]
        sections.append(f"<h2>{esc(result['treatment'])} against {esc(experiment['control'])}</h2>")
        sections.append(
            comparison_table(
                "Treatment against control per metric (effect with its interval)",
                comparisons,
                "Not enough samples yet for any metric (each arm needs the minimum sample).",
            )
        )
    sections.append(sample_ratio(experiment.get("sample_ratio") or {}))
    return Page(f"Experiment {name} on {experiment['route']}", "rollouts", "".join(sections))


async def confirm_stop(ctx: Context, name: str) -> Page:
    experiment = await ctx.get(_admin_path(name))
    body = (
        f"<p class='move'>Stop experiment <strong>{esc(name)}</strong> on <code>{esc(experiment['route'])}</code>: "
        f"traffic goes back to the route's own targets; the numbers so far stay readable.</p>"
        f'<form method="post" action="{_path(name)}/stop">{csrf_field(ctx.viewer)}'
        f'<button type="submit" class="danger">Confirm: stop</button> {link(_path(name), "Cancel")}</form>'
    )
    return Page(f"Stop: experiment {name}", "rollouts", body)


async def stop(ctx: Context, name: str) -> str:
    experiment = await ctx.send("POST", _admin_path(name) + "/stop")
    return f"{_path(name)}#notice=Experiment {name} is now {experiment['state']}."
