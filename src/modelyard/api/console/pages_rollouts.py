"""Rollouts: each canary rollout's progress through its steps, per-arm numbers with intervals, the decision
history with the numbers behind every decision, and resume / promote / roll back / abort with confirmation.

Everything is read from and done through ``/admin/rollouts`` (``api/rollouts_admin.py``); an action is two steps,
as on the models page: a confirmation naming what will happen, then the POST.
"""

from __future__ import annotations

from typing import Any

from modelyard.api.console.context import Context, Page
from modelyard.api.console.html import badge, csrf_field, esc, facts, link, number, table
from modelyard.errors import invalid_value

ACTIONS = {
    "resume": ("Resume", "continue the rollout at its current step"),
    "promote": ("Promote now", "move the candidate to production now, through the eval gates"),
    "rollback": ("Roll back", "send all traffic back to the control version"),
    "abort": ("Abort", "stop without a verdict; no alias moves"),
}
_ALLOWED = {"running": ("promote", "rollback", "abort"), "paused": ("resume", "promote", "rollback", "abort")}
_TONE = {"running": "ok", "paused": "", "promoted": "ok", "rolled_back": "bad", "aborted": "muted"}


def _path(rollout_id: int) -> str:
    return f"/console/rollouts/{rollout_id}"


def _id(text: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise invalid_value("A rollout id is a number.", "rollout")
    return int(text)


def _steps(rollout: dict[str, Any]) -> str:
    cells = []
    for i, share in enumerate(rollout["steps"]):
        state = "done" if i < rollout["step"] else ("now" if i == rollout["step"] else "next")
        cells.append(f'<li class="step {state}">{esc(share)} %<span class="visually-hidden"> ({state})</span></li>')
    return f'<ol class="steps" aria-label="Steps (candidate share)">{"".join(cells)}</ol>'


async def listing(ctx: Context) -> Page:
    rollouts, problem = await ctx.attempt("/admin/rollouts", {"limit": "50"})
    if problem is not None:
        return Page("Rollouts", "rollouts", "", 200, (problem,))
    rows = [
        [
            link(_path(r["id"]), f"#{r['id']}"),
            f"<code>{esc(r['route'])}</code>",
            esc(f"v{r['control_version']} → v{r['candidate_version']}"),
            badge(r["state"], _TONE.get(r["state"], "")),
            esc(f"{r['share']} % (step {r['step'] + 1} of {len(r['steps'])})"),
            esc(r.get("reason") or "—"),
            esc(r["updated_at"]),
        ]
        for r in rollouts["data"]
    ]
    body = table(
        "Rollouts, newest first",
        ["Rollout", "Route", "Control → candidate", "State", "Candidate share", "Reason", "Updated"],
        rows,
        empty="No rollouts yet (modelyard rollout start, or POST /admin/rollouts).",
    )
    note = '<p class="muted">Experiments (modelyard experiments …) have no admin API yet, so no page here.</p>'
    return Page("Rollouts", "rollouts", body + note)


async def detail(ctx: Context, rollout_text: str) -> Page:
    rollout_id = _id(rollout_text)
    rollout = await ctx.get(f"/admin/rollouts/{rollout_id}")
    decisions = (await ctx.get(f"/admin/rollouts/{rollout_id}/decisions"))["data"]
    actions = ""
    if ctx.viewer.can_change:
        links = [
            link(f"{_path(rollout_id)}/{name}", f"{ACTIONS[name][0]}…") for name in _ALLOWED.get(rollout["state"], ())
        ]
        actions = f'<p class="actions">{" · ".join(links)}</p>' if links else ""
    last = decisions[-1] if decisions else None
    sections = [
        facts(
            [
                ("Route", rollout["route"]),
                ("Control", f"{rollout['model']}:{rollout['control_version']}"),
                ("Candidate", f"{rollout['model']}:{rollout['candidate_version']}"),
                ("State", rollout["state"]),
                ("Reason", rollout.get("reason")),
                ("Candidate share now", f"{rollout['share']} %"),
                ("Started", f"{rollout['started_at']} by {rollout['created_by']}"),
                ("This step since", rollout["step_started_at"]),
            ]
        ),
        _steps(rollout),
        actions,
        "<h2>Arms at the last decision</h2>",
        _comparisons(last),
        "<h2>Decisions, newest first</h2>",
        _decisions(decisions),
    ]
    return Page(f"Rollout #{rollout_id} on {rollout['route']}", "rollouts", "".join(sections))


def _comparisons(decision: dict[str, Any] | None) -> str:
    if decision is None:
        return '<p class="empty">No decision yet.</p>'
    numbers = decision.get("numbers") or {}
    rows = [
        [
            esc(c.get("metric")),
            esc(f"{c.get('control_n')} / {c.get('treatment_n')}"),
            esc(f"{number(c.get('control_value'), 4)} → {number(c.get('treatment_value'), 4)}"),
            esc(f"{number(c.get('effect'), 4)} [{number(c.get('lower'), 4)}, {number(c.get('upper'), 4)}]"),
            esc(number(c.get("p_value"), 4) if c.get("p_value") is not None else number(c.get("e_value"), 3)),
            badge(str(c.get("verdict")), "bad" if c.get("breach") else ""),
        ]
        for c in numbers.get("comparisons", [])
    ]
    ratio = numbers.get("sample_ratio") or {}
    srm = ""
    if ratio:
        verdict = badge("mismatch", "bad") if ratio.get("mismatch") else badge("ok", "ok")
        srm = (
            f"<p>Sample ratio: {esc(ratio.get('counts'))} against {esc(ratio.get('expected'))} expected, "
            f"χ² {esc(number(ratio.get('chi_square'), 2))}, p {esc(number(ratio.get('p_value'), 4))} {verdict}</p>"
        )
    return (
        table(
            "Candidate against control per metric (effect with its interval)",
            [
                "Metric",
                "Samples control / candidate",
                "Control → candidate",
                "Effect [interval]",
                "p (or e)",
                "Verdict",
            ],
            rows,
            empty="No comparison in the last decision.",
        )
        + srm
    )


def _decisions(decisions: list[dict[str, Any]]) -> str:
    rows = []
    for d in reversed(decisions):
        numbers = d.get("numbers") or {}
        summary = "; ".join(
            f"{c.get('metric')}: {number(c.get('effect'), 4)} [{number(c.get('lower'), 4)}, "
            f"{number(c.get('upper'), 4)}] {c.get('verdict')}"
            for c in numbers.get("comparisons", [])
        )
        rows.append(
            [
                esc(d["at"]),
                esc(d["action"]),
                esc(f"{d['share']} %"),
                esc(d.get("reason") or "—"),
                esc(summary or "—"),
                esc(d.get("actor") or "—"),
            ]
        )
    return table("Every decision with its numbers", ["When", "Action", "Share", "Reason", "Numbers", "Who"], rows)


async def confirm(ctx: Context, rollout_text: str, action: str) -> Page:
    rollout_id = _id(rollout_text)
    if action not in ACTIONS:
        raise invalid_value(f"Unknown rollout action {action!r} (resume, promote, rollback, abort).", "action")
    rollout = await ctx.get(f"/admin/rollouts/{rollout_id}")
    title, what = ACTIONS[action]
    body = (
        f"<p class='move'>{esc(title)} rollout #{rollout_id} on <strong>{esc(rollout['route'])}</strong> "
        f"(v{esc(rollout['control_version'])} → v{esc(rollout['candidate_version'])}, now {esc(rollout['share'])} %): "
        f"{esc(what)}.</p>"
        f'<form method="post" action="{_path(rollout_id)}/{action}">{csrf_field(ctx.viewer)}'
        f'<button type="submit" class="{"primary" if action in ("resume", "promote") else "danger"}">'
        f"Confirm: {esc(title.lower())}</button> {link(_path(rollout_id), 'Cancel')}</form>"
    )
    return Page(f"{title}: rollout #{rollout_id}", "rollouts", body)


async def act(ctx: Context, rollout_text: str, action: str) -> str:
    rollout_id = _id(rollout_text)
    if action not in ACTIONS:
        raise invalid_value(f"Unknown rollout action {action!r} (resume, promote, rollback, abort).", "action")
    rollout = await ctx.send("POST", f"/admin/rollouts/{rollout_id}/{action}")
    reason = f" ({rollout['reason']})" if rollout.get("reason") else ""
    return f"{_path(rollout_id)}#notice=Rollout #{rollout_id} is now {rollout['state']}{reason}."
