"""Requests: the stored request log with filters, one request in detail, shadow pairs side by side, export."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

import orjson

from modelyard.api.console.context import Context, Page
from modelyard.api.console.diff import word_diff
from modelyard.api.console.html import badge, esc, facts, link, number, table

FILTERS = (
    ("route", "Route", "e.g. gemma-3-270m"),
    ("version", "Version", "e.g. 2"),
    ("status", "Status", "200, 4xx, 5xx"),
    ("since", "Since", "15m, 2h, 7d or ISO time"),
    ("until", "Until", "ISO time"),
    ("limit", "Rows", "100"),
)


def _filters(query: dict[str, str]) -> dict[str, str]:
    return {name: query[name].strip() for name, _, _ in FILTERS if query.get(name, "").strip()}


def _filter_form(action: str, filters: dict[str, str], names: tuple[str, ...]) -> str:
    fields = "".join(
        f'<div class="field"><label for="f-{name}">{esc(label)}</label>'
        f'<input id="f-{name}" name="{name}" value="{esc(filters.get(name, ""))}" placeholder="{esc(hint)}"></div>'
        for name, label, hint in FILTERS
        if name in names
    )
    return (
        f'<form method="get" action="{action}" class="filters" aria-label="Filters">{fields}'
        f'<div class="field actions"><button type="submit">Filter</button> {link(action, "Clear")}</div></form>'
    )


def _status(row: dict[str, Any]) -> str:
    status = row["status"]
    tone = "ok" if status < 400 else "bad"
    return badge(str(status) + (f" {row['error_type']}" if row.get("error_type") else ""), tone)


async def listing(ctx: Context, query: dict[str, str]) -> Page:
    filters = _filters(query)
    form = _filter_form("/console/requests", filters, tuple(name for name, _, _ in FILTERS))
    export = "/console/requests/export" + ("?" + urlencode(filters) if filters else "")
    intro = (
        f"<p>{link(export, 'Export these as JSON lines')} (every matching row unless Rows is set) · "
        f"{link('/console/shadow', 'Shadow pairs')}</p>"
    )
    rows_data, problem = await ctx.attempt("/admin/requests", filters)
    if problem is not None:
        return Page("Requests", "requests", form + intro, 400, (problem,))
    rows = [
        [
            esc(row["received_at"]),
            link("/console/requests/" + quote(row["request_id"], safe=""), row["request_id"]),
            f"<code>{esc(row['route'])}</code>",
            esc(f"v{row['version']}" if row["version"] else "—"),
            _status(row),
            esc(number(row["duration_ms"], 0, " ms")),
            esc(number(row.get("ttft_ms"), 0, " ms")),
            esc(f"{row['prompt_tokens']} → {row['completion_tokens']}"),
            esc(row["attempts"]),
            esc("shadow" if row.get("shadow_of") else ("stream" if row["stream"] else "json")),
        ]
        for row in rows_data["data"]
    ]
    body = (
        form
        + intro
        + table(
            f"{len(rows)} stored requests, newest first",
            [
                "Received",
                "Request id",
                "Route",
                "Version",
                "Status",
                "Duration",
                "TTFT",
                "Tokens in → out",
                "Attempts",
                "Kind",
            ],
            rows,
            empty="No stored request matches these filters.",
        )
    )
    return Page("Requests", "requests", body)


async def detail(ctx: Context, request_id: str) -> Page:
    found = await ctx.get("/admin/requests/" + quote(request_id, safe=""))
    sections = []
    for row in found["data"]:
        title = "Shadow copy" if row.get("shadow_of") else "Request"
        sections.append(f"<h2>{title} to {esc(row['target'] or row['route'])}</h2>")
        sections.append(
            facts(
                [
                    ("Request id", row["request_id"]),
                    ("Trace id", row["trace_id"]),
                    ("Received", row["received_at"]),
                    ("Endpoint", row["endpoint"]),
                    ("Route", row["route"]),
                    ("Model", f"{row['model']} v{row['version']}"),
                    ("Target", row["target"]),
                    ("Status", f"{row['status']} {row.get('error_type') or ''}".strip()),
                    ("Stream", "yes" if row["stream"] else "no"),
                    ("Duration", number(row["duration_ms"], 1, " ms")),
                    ("Queued", number(row.get("queued_ms"), 1, " ms")),
                    ("Time to first token", number(row.get("ttft_ms"), 1, " ms")),
                    ("Time per output token", number(row.get("tpot_ms"), 2, " ms")),
                    ("Tokens", f"{row['prompt_tokens']} in, {row['completion_tokens']} out"),
                    ("Attempts", row["attempts"]),
                    ("Cost", f"${row['cost_usd']:.6f}"),
                    ("Outputs match primary", {True: "yes", False: "no", None: "—"}[row.get("outputs_match")]),
                    ("Similarity", number(row.get("similarity"), 3)),
                ]
            )
        )
        sections.append(_bodies(row))
    return Page(f"Request {request_id}", "requests", "".join(sections))


def _bodies(row: dict[str, Any]) -> str:
    if row.get("request_body") is None and row.get("response_body") is None:
        return '<p class="muted">Bodies were not kept for this request (see --request-log-bodies).</p>'
    return (
        "<h3>Request body (as stored, redacted)</h3>"
        f"<pre tabindex='0'>{esc(_pretty(row.get('request_body')))}</pre>"
        f"<h3>Response body</h3><pre tabindex='0'>{esc(_pretty(row.get('response_body')))}</pre>"
    )


def _pretty(text: str | None) -> str:
    if text is None:
        return "—"
    try:
        return orjson.dumps(orjson.loads(text), option=orjson.OPT_INDENT_2).decode()
    except orjson.JSONDecodeError:
        return text


def answer_text(body: str | None) -> str:
    """The generated text of a stored answer (chat or completion, JSON or the stream's joined text)."""
    if not body:
        return ""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body
    if isinstance(value, dict):
        choices = value.get("choices") or []
        if choices and isinstance(choices[0], dict):
            choice = choices[0]
            message = choice.get("message")
            if isinstance(message, dict) and isinstance(message.get("content"), str):
                return str(message["content"])
            if isinstance(choice.get("text"), str):
                return str(choice["text"])
    return body


async def shadow(ctx: Context, query: dict[str, str]) -> Page:
    filters = _filters(query)
    form = _filter_form("/console/shadow", filters, ("route", "since", "until", "limit"))
    pairs, problem = await ctx.attempt("/admin/shadow", {**filters, "bodies": "true"})
    if problem is not None:
        return Page("Shadow pairs", "requests", form, 400, (problem,))
    sections = [form]
    for pair in pairs["data"]:
        primary, copy = pair.get("primary"), pair["shadow"]
        left, right = word_diff(
            answer_text((primary or {}).get("response_body")), answer_text(copy.get("response_body"))
        )
        same = copy.get("outputs_match")
        verdict = badge("same output", "ok") if same else badge("outputs differ", "bad") if same is False else ""
        sections.append(
            f"<section class='pair' aria-label='Shadow pair {esc(copy['shadow_of'])}'>"
            f"<h2>{link('/console/requests/' + quote(copy['shadow_of'], safe=''), copy['shadow_of'])} {verdict} "
            f"<span class='muted'>similarity {esc(number(copy.get('similarity'), 3))}</span></h2>"
            "<div class='side-by-side'>"
            f"<div><h3>Primary: {esc((primary or {}).get('target') or 'not stored')}</h3>"
            f"<pre tabindex='0'>{left or '—'}</pre></div>"
            f"<div><h3>Shadow: {esc(copy['target'])}</h3><pre tabindex='0'>{right or '—'}</pre></div></div></section>"
        )
    if len(sections) == 1:
        sections.append('<p class="empty">No shadow copies stored (declare shadow: in the deployments file).</p>')
    return Page("Shadow pairs", "requests", "".join(sections))
