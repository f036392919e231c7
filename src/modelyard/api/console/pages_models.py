"""Models: every model and version with aliases, provenance, model card evidence and gates; promote and roll back.

A change is two steps, both plain HTML: a confirmation page that names the move (``production: v1 → v2``), then
the POST. The POST is a compare-and-set on the version the confirmation showed (``expected_version``), so a move
made by someone else meanwhile is refused instead of overwritten. A gate refusal comes back as the confirmation
page with the registry's numbers, and only then offers ``force`` — which needs a typed reason, kept in the event.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from modelyard.api.console.context import Context, Page
from modelyard.api.console.html import badge, csrf_field, esc, facts, link, table
from modelyard.errors import APIError, console_missing_reason, invalid_value


def _model_path(name: str) -> str:
    return "/admin/models/" + quote(name, safe="/")


def console_model(name: str) -> str:
    return "/console/models/" + quote(name, safe="/")


async def listing(ctx: Context) -> Page:
    models, problem = await ctx.attempt("/admin/models")
    if problem is not None:
        return Page("Models", "models", "", 200, (problem,))
    rows = []
    for model in models["data"]:
        aliases = ", ".join(f"{a} → v{v}" for a, v in sorted(model["aliases"].items())) or "—"
        live = [v for v in model["versions"] if not v.get("archived_at")]
        rows.append(
            [
                link(console_model(model["name"]), model["name"]),
                esc(model["description"] or "—"),
                esc(model["owner"] or "—"),
                esc(aliases),
                esc(len(live)),
            ]
        )
    body = table(
        "Registered models",
        ["Model", "Description", "Owner", "Aliases", "Versions"],
        rows,
        empty="No models are registered.",
    )
    return Page("Models", "models", body)


async def detail(ctx: Context, name: str) -> Page:
    model = await ctx.get(_model_path(name))
    gates, gates_problem = await ctx.attempt(_model_path(name) + "/gates")
    events, events_problem = await ctx.attempt(_model_path(name) + "/events", {"limit": "20"})
    aliases: dict[str, int] = model["aliases"]
    sections = [
        facts(
            [
                ("Description", model["description"]),
                ("Owner", model["owner"]),
                ("Tags", ", ".join(f"{k}={v}" for k, v in sorted(model["tags"].items()))),
                ("Registered by", model["created_by"]),
                ("Registered at", model["created_at"]),
            ]
        ),
        "<h2>Aliases</h2>",
        _aliases(ctx, name, aliases),
        "<h2>Versions</h2>",
        _versions(ctx, name, model["versions"], aliases),
        "<h2>Promotion gates</h2>",
        _gates(gates, gates_problem),
    ]
    for version in sorted(model["versions"], key=lambda v: -v["number"]):
        if version.get("archived_at"):
            continue
        card, problem = await ctx.attempt(_model_path(name) + "/card", {"version": str(version["number"])})
        sections.append(_card(version, card, problem))
    sections += ["<h2>History</h2>", _history(events, events_problem)]
    return Page(f"Model {name}", "models", "".join(sections))


def _aliases(ctx: Context, name: str, aliases: dict[str, int]) -> str:
    rows = []
    for alias, version in sorted(aliases.items()):
        action = (
            link(f"{console_model(name)}/rollback?{urlencode({'alias': alias})}", f"Roll back {alias}…")
            if ctx.viewer.can_change
            else "—"
        )
        rows.append([esc(alias), esc(f"v{version}"), action])
    return table(
        "Aliases and the version each points at",
        ["Alias", "Version", "Action"],
        rows,
        empty="No aliases: nothing of this model is served by alias.",
    )


def _versions(ctx: Context, name: str, versions: list[dict[str, Any]], aliases: dict[str, int]) -> str:
    rows = []
    for version in sorted(versions, key=lambda v: -v["number"]):
        number_ = version["number"]
        pointing = sorted(a for a, v in aliases.items() if v == number_)
        if version.get("archived_at"):
            status = badge("archived", "muted")
        else:
            status = " ".join(badge(a, "ok") for a in pointing) or badge("registered")
        action = "—"
        if ctx.viewer.can_change and not version.get("archived_at") and aliases.get("production") != number_:
            query = urlencode({"version": number_, "alias": "production"})
            action = link(f"{console_model(name)}/promote?{query}", f"Promote v{number_} to production…")
        rows.append(
            [
                esc(f"v{number_}"),
                status,
                esc(version.get("quantization") or "—"),
                esc(f"{version['size_bytes'] / 1e6:.1f} MB"),
                f"<code>{esc(version['sha256'][:12])}</code>",
                esc(version["created_at"]),
                action,
            ]
        )
    return table(
        "Versions, newest first", ["Version", "Status", "Quantization", "Size", "sha256", "Registered", "Action"], rows
    )


def _gates(gates: Any, problem: str | None) -> str:
    if problem is not None:
        return f'<p class="muted">{esc(problem)}</p>'
    if not gates or not gates.get("gates"):
        return '<p class="empty">No gates: any version may be promoted.</p>'
    rows = [[esc(g.get("name") or g.get("type")), f"<code>{esc(_gate_text(g))}</code>"] for g in gates["gates"]]
    applies = ", ".join(gates.get("aliases") or []) or "—"
    return f"<p>Gated aliases: <strong>{esc(applies)}</strong></p>" + table("Gates", ["Gate", "Rule"], rows)


def _gate_text(gate: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(gate.items()) if k not in ("name",) and v is not None)


def _card(version: dict[str, Any], card: Any, problem: str | None) -> str:
    key = version["key"]
    if problem is not None:
        return f"<h2>{esc(key)}</h2><p class='muted'>{esc(problem)}</p>"
    provenance, architecture = card["provenance"], card["architecture"]
    evaluations = card.get("evaluations") or {}
    runs = [
        [
            esc(r["run_id"]),
            esc(r["suite"]),
            esc(r["status"]),
            esc(f"{r['pass_rate']:.1%} of {r['total']}" if r.get("pass_rate") is not None else "—"),
            badge("met", "ok") if r.get("threshold_met") else badge("not met", "bad"),
            esc(r.get("finished_at") or "—"),
        ]
        for r in evaluations.get("eval_runs", [])
    ]
    quants = [
        [
            esc(q["report_id"]),
            esc(q["base"]),
            esc(f"{q['ppl_base']:.2f} → {q['ppl_candidate']:.2f}"),
            esc(f"{q['ppl_ratio']:.3f}"),
            esc(f"{q['kld_mean']:.4f}"),
            esc(f"{q['top_token_agreement']:.1%}"),
        ]
        for q in evaluations.get("quant_reports", [])
    ]
    return (
        f"<h2>{esc(key)}: model card</h2>"
        + facts(
            [
                ("Status", card["status"]),
                ("License", card["license"] or "not declared"),
                ("Architecture", architecture["architecture"]),
                ("Parameters", architecture["parameter_count"]),
                ("Context length", architecture["context_length"]),
                ("Quantization", architecture["quantization"]),
                ("Base model", provenance["base_model"]),
                ("Derived from", provenance["parent_version"]),
                ("Training data", ", ".join(provenance["training_data"])),
                ("Fine-tuning data", ", ".join(provenance["fine_tuning_data"])),
                ("Lineage notes", provenance["lineage_notes"]),
                ("Artifact", card["identity"]["artifact"]),
                ("sha256", card["identity"]["sha256"]),
                ("Registered by", f"{provenance['created_by']} at {provenance['created_at']}"),
            ]
        )
        + table(
            f"Eval runs of {key}",
            ["Run", "Suite", "Status", "Pass rate", "Threshold", "Finished"],
            runs,
            empty="No eval runs recorded.",
        )
        + table(
            f"Quantization reports of {key}",
            ["Report", "Base", "Perplexity base → this", "PPL ratio", "KLD mean", "Top-token agreement"],
            quants,
            empty="No quantization reports recorded.",
        )
    )


def _history(events: Any, problem: str | None) -> str:
    if problem is not None:
        return f'<p class="muted">{esc(problem)}</p>'
    rows = [[esc(e["at"]), esc(e["actor"]), esc(e["summary"])] for e in reversed(events["data"])]
    return table("The model's last 20 events, newest first", ["When", "Who", "What"], rows)


# -- promote ---------------------------------------------------------------------------------------------------------


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit()  # "²".isdigit() is True, int("²") is not a number


def _int(value: str | None, param: str) -> int:
    if value is None or not _digits(value) or int(value) < 1:
        raise invalid_value(f"{param} must be a version number (1 or more)", param)
    return int(value)


async def confirm_promote(
    ctx: Context,
    name: str,
    query: dict[str, str],
    refusal: APIError | None = None,
    status: int = 200,
    offer_force: bool = False,
) -> Page:
    version = _int(query.get("version"), "version")
    alias = query.get("alias") or "production"
    model = await ctx.get(_model_path(name))
    current = model["aliases"].get(alias)
    move = f"{alias}: {'v' + str(current) if current else '(not set)'} → v{version}"
    forced = offer_force or (refusal is not None and refusal.code == "promotion_gate_failed")
    force = ""
    if forced:
        force = (
            '<fieldset class="force"><legend>Override the failed gates</legend>'
            "<p>The move is refused by the gates above. Forcing it is recorded in the history and the audit log "
            "with your key and this reason.</p>"
            '<input type="hidden" name="force" value="true">'
            '<label for="reason">Reason for forcing (required)</label>'
            '<textarea id="reason" name="reason" required minlength="3" maxlength="500" rows="2"></textarea>'
            "</fieldset>"
        )
    body = (
        f"<p class='move'>Move alias <strong>{esc(alias)}</strong> of <strong>{esc(name)}</strong>: "
        f"<strong>{esc(move)}</strong></p>"
        "<p>Traffic for this alias moves to the new version as soon as its engine is ready.</p>"
        f'<form method="post" action="{esc(console_model(name))}/promote">{csrf_field(ctx.viewer)}'
        f'<input type="hidden" name="version" value="{version}"><input type="hidden" name="alias" value="{esc(alias)}">'
        f'<input type="hidden" name="expected_version" value="{esc(current or "")}">{force}'
        f'<button type="submit" class="{"danger" if forced else "primary"}">'
        f"{'Force the move' if forced else 'Confirm: ' + esc(move)}</button> "
        f"{link(console_model(name), 'Cancel')}</form>"
    )
    errors = (refusal.message,) if refusal is not None else ()
    return Page(f"Promote {name}", "models", body, status, errors)


async def promote(ctx: Context, name: str, form: dict[str, str]) -> Page | str:
    version = _int(form.get("version"), "version")
    alias = form.get("alias") or "production"
    force = form.get("force") == "true"
    reason = form.get("reason", "").strip()
    query = {"version": str(version), "alias": alias}
    if force and len(reason) < 3:
        return await confirm_promote(ctx, name, query, console_missing_reason(), 400, offer_force=True)
    body: dict[str, Any] = {"version": version, "alias": alias, "force": force, "reason": reason}
    if _digits(form.get("expected_version", "")):
        body["expected_version"] = int(form["expected_version"])
    try:
        move = await ctx.send("POST", _model_path(name) + "/promote", body)
    except APIError as refusal:
        if refusal.code in ("promotion_gate_failed", "conflict"):
            return await confirm_promote(ctx, name, query, refusal, refusal.status)
        raise
    origin = f"v{move['from_version']}" if move.get("from_version") else "(not set)"
    forced = " (forced)" if force else ""
    return f"{console_model(name)}#notice=Moved {alias} of {name}: {origin} → v{move['to_version']}{forced}."


async def confirm_rollback(ctx: Context, name: str, query: dict[str, str]) -> Page:
    alias = query.get("alias") or "production"
    events = await ctx.get(_model_path(name) + "/events", {"limit": "200"})
    model = await ctx.get(_model_path(name))
    current = model["aliases"].get(alias)
    moves = [e for e in events["data"] if e["kind"] == "alias_moved" and e["alias"] == alias]  # oldest first
    last = moves[-1] if moves else None
    if current is None or last is None or last.get("from_version") is None:
        body = f"<p>Alias <strong>{esc(alias)}</strong> has no earlier version to roll back to.</p>"
        return Page(f"Roll back {name}", "models", body + link(console_model(name), "Back to the model"))
    move = f"{alias}: v{current} → v{last['from_version']}"
    body = (
        f"<p class='move'>Roll back alias <strong>{esc(alias)}</strong> of <strong>{esc(name)}</strong>: "
        f"<strong>{esc(move)}</strong></p>"
        f'<form method="post" action="{esc(console_model(name))}/rollback">{csrf_field(ctx.viewer)}'
        f'<input type="hidden" name="alias" value="{esc(alias)}">'
        f'<button type="submit" class="danger">Confirm: {esc(move)}</button> '
        f"{link(console_model(name), 'Cancel')}</form>"
    )
    return Page(f"Roll back {name}", "models", body)


async def rollback(ctx: Context, name: str, form: dict[str, str]) -> Page | str:
    alias = form.get("alias") or "production"
    move = await ctx.send("POST", _model_path(name) + "/rollback", {"alias": alias})
    return (
        f"{console_model(name)}#notice=Rolled {alias} of {name} back: v{move['from_version']} → v{move['to_version']}."
    )
