"""Keys (create with the secret shown once, revoke, spend) and the audit log with its verification status."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from modelyard.api.console.context import Context, Page
from modelyard.api.console.html import badge, csrf_field, esc, link, table
from modelyard.errors import invalid_value
from modelyard.security.keys import SCOPES


async def listing(ctx: Context, created: dict[str, Any] | None = None) -> Page:
    keys, problem = await ctx.attempt("/admin/keys")
    spend, spend_problem = await ctx.attempt("/admin/spend")
    if problem is not None:
        return Page("Keys", "keys", "", 200, (problem,))
    by_key: dict[str, list[dict[str, Any]]] = {}
    for row in (spend or {}).get("data", []):
        by_key.setdefault(row["key_id"], []).append(row)
    rows = []
    for key in keys["data"]:
        spent = "; ".join(
            f"{_period(s['period'])}: {s['requests']} requests, {s['tokens']} tokens, ${s['cost_usd']:.4f}"
            for s in by_key.get(key["id"], [])
        )
        action = "—"
        if ctx.viewer.can_change and key["status"] == "active":
            action = (
                f"<details><summary>Revoke…</summary>"
                f'<form method="post" action="/console/keys/{quote(key["id"], safe="")}/revoke">'
                f"{csrf_field(ctx.viewer)}<p>Every replica refuses this key within its key poll interval.</p>"
                f'<button type="submit" class="danger">Confirm: revoke key {esc(key["name"])}</button>'
                "</form></details>"
            )
        tone = "ok" if key["status"] == "active" else "bad"
        rows.append(
            [
                esc(key["name"]),
                f"<code class='nowrap'>{esc(key['prefix'])}…</code>",
                esc(", ".join(key["scopes"])),
                esc(", ".join(key["models"]) or "all"),
                badge(key["status"], tone),
                esc(key["expires_at"] or "never"),
                esc(spent or (spend_problem or "nothing yet")),
                action,
            ]
        )
    sections = []
    if created is not None:
        sections.append(
            '<div class="secret" role="alert"><h2>New key: copy its secret now</h2>'
            f"<p>Key <strong>{esc(created['name'])}</strong> ({esc(', '.join(created['scopes']))}). "
            "This is the only time the secret is shown; the gateway keeps only its hash.</p>"
            f'<p><code class="secret-value" tabindex="0">{esc(created["key"])}</code></p></div>'
        )
    sections.append(
        table(
            "API keys (never their secrets)",
            ["Name", "Prefix", "Scopes", "Models", "Status", "Expires", "Spend this day and month", "Action"],
            rows,
        )
    )
    if ctx.viewer.can_change:
        sections.append(_create_form(ctx))
    return Page("Keys", "keys", "".join(sections))


def _create_form(ctx: Context) -> str:
    scopes = "".join(
        f'<label class="inline"><input type="checkbox" name="scope_{s}" value="on"'
        f"{' checked' if s == 'inference' else ''}> {esc(s)}</label>"
        for s in SCOPES
    )
    return (
        '<h2>Create a key</h2><form method="post" action="/console/keys" class="stacked">'
        f"{csrf_field(ctx.viewer)}"
        '<label for="k-name">Name</label><input id="k-name" name="name" required maxlength="128">'
        f"<fieldset><legend>Scopes</legend>{scopes}</fieldset>"
        '<label for="k-models">Models it may use (comma-separated globs; empty: all)</label>'
        '<input id="k-models" name="models" placeholder="gemma-3-270m, gemma-*@canary">'
        '<label for="k-days">Expires after (days; empty: never)</label>'
        '<input id="k-days" name="expires_days" inputmode="decimal">'
        '<button type="submit" class="primary">Create key</button></form>'
    )


async def create(ctx: Context, form: dict[str, str]) -> Page:
    scopes = [s for s in SCOPES if form.get(f"scope_{s}") == "on"]
    body: dict[str, Any] = {
        "name": form.get("name", "").strip(),
        "scopes": scopes,
        "models": [m.strip() for m in form.get("models", "").split(",") if m.strip()],
    }
    days = form.get("expires_days", "").strip()
    if days:
        try:
            body["expires_in_s"] = float(days) * 86400
        except ValueError:
            raise invalid_value("Expires after must be a number of days", "expires_days") from None
    created = await ctx.send("POST", "/admin/keys", body)
    page = await listing(ctx, created)
    return Page(page.title, page.slug, page.body, 201, page.errors)


async def revoke(ctx: Context, key_id: str) -> str:
    key = await ctx.send("POST", f"/admin/keys/{quote(key_id, safe='')}/revoke")
    return f"/console/keys#notice=Revoked key {key['name']}: every replica refuses it within a key poll."


async def audit(ctx: Context, query: dict[str, str]) -> Page:
    filters = {k: query[k].strip() for k in ("action", "target", "limit") if query.get(k, "").strip()}
    verify, verify_problem = await ctx.attempt("/admin/audit/verify")
    records, problem = await ctx.attempt("/admin/audit", filters)
    if verify_problem is not None:
        status = f'<p class="error" role="alert">Could not verify the chain: {esc(verify_problem)}</p>'
    elif verify["ok"]:
        status = (
            f'<p class="verified">{badge("verified", "ok")} The hash chain of all {verify["checked"]} records is '
            f"intact (head #{esc(verify['head_id'])}, <code>{esc(str(verify['head_hash'])[:16])}</code>…).</p>"
        )
    else:
        status = (
            f'<div class="error" role="alert"><p>{badge("broken", "bad")} The audit chain does not verify at record '
            f"#{esc(verify['record_id'])}: {esc(verify['problem'])}</p></div>"
        )
    fields = "".join(
        f'<div class="field"><label for="a-{n}">{label}</label><input id="a-{n}" name="{n}" '
        f'value="{esc(filters.get(n, ""))}"></div>'
        for n, label in (("action", "Action"), ("target", "Target"), ("limit", "Rows"))
    )
    form = (
        f'<form method="get" action="/console/audit" class="filters" aria-label="Filters">{fields}'
        '<div class="field actions"><button type="submit">Filter</button> '
        f"{link('/console/audit', 'Clear')}</div></form>"
    )
    if problem is not None:
        return Page("Audit log", "audit", status + form, 400, (problem,))
    rows = [
        [
            esc(r["id"]),
            esc(r["at"]),
            esc(r["actor"]),
            f"<code>{esc(r['action'])}</code>",
            esc(r["target"]),
            f"<code>{esc(_short(r['before']))}</code>",
            f"<code>{esc(_short(r['after']))}</code>",
        ]
        for r in records["data"]
    ]
    body = (
        status
        + form
        + table("Audit records, newest first", ["#", "When", "Who", "Action", "Target", "Before", "After"], rows)
    )
    return Page("Audit log", "audit", body)


def _period(period: str) -> str:
    """``d2026-12-01`` → ``day 2026-12-01``, ``m2026-12`` → ``month 2026-12`` (the spend table's period keys)."""
    kind = {"d": "day", "m": "month"}.get(period[:1])
    return f"{kind} {period[1:]}" if kind else period


def _short(value: Any) -> str:
    text = "—" if value is None else str(value)
    return text if len(text) <= 160 else text[:157] + "…"
