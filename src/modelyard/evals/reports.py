"""Run reports: Markdown for PRs and CI logs, and one self-contained HTML file (inline CSS and SVG, no assets)
that opens from disk or a CI artifact store with no network.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from modelyard.evals.records import CaseResult, RunRecord

WORST_CASES = 10


def worst_cases(run: RunRecord, limit: int = WORST_CASES) -> list[CaseResult]:
    """Errors first, then failures, then the lowest scores."""
    return sorted(run.cases, key=lambda c: (c.passed, c.error is None, c.score, c.position))[:limit]


def render_markdown(run: RunRecord) -> str:
    s = run.summary
    lines = [
        f"# Eval run {run.run_id}: suite `{run.suite}`",
        "",
        f"- **Target:** `{run.target}` → version **{run.version or 'unknown'}** (gateway {run.gateway_url})",
        f"- **Status:** {run.status}" + (f" — {run.abort_reason}" if run.abort_reason else ""),
        f"- **Pass rate:** {s['pass_rate']:.1%} ({s['passed']}/{s['total']}; {s['failed']} failed, {s['errors']} "
        f"errors) — threshold {run.pass_threshold:.0%}: **{'PASS' if run.threshold_met else 'FAIL'}**",
        f"- **Sampling:** temperature {run.temperature:g}, seed {run.seed}"
        + (f"; outputs re-scored from {run.cached_from}" if run.cached_from else ""),
        f"- **Latency:** p50 {_ms(s['latency_ms']['p50'])}, p95 {_ms(s['latency_ms']['p95'])}; "
        f"tokens {s['tokens']['prompt']} in / {s['tokens']['completion']} out",
        f"- **When:** {run.started_at.isoformat()} → {run.finished_at.isoformat()} by {run.created_by}",
        "",
        "## Assertions",
        "",
        "| Assertion | Type | Pass rate | Mean score | Errors |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, a in s["assertions"].items():
        lines.append(
            f"| {name} | {a['type']} | {a['pass_rate']:.1%} ({a['passed']}/{a['total']}) | "
            f"{a['mean_score']:.2f} | {a['errors']} |"
        )
    lines += ["", "## Worst cases", ""]
    for case in worst_cases(run):
        lines += [
            f"### {case.case_id} — {'pass' if case.passed else 'FAIL'} (score {case.score:.2f})",
            "",
            "Input:",
            "",
            "```",
            _input_text(case),
            "```",
            "",
            "Output:",
            "",
            "```",
            case.output if case.output is not None else "(none)",
            "```",
            "",
        ]
        if case.error:
            lines += [f"**Error:** {case.error}", ""]
        for a in case.assertions:
            mark = "pass" if a["passed"] else "FAIL"
            lines.append(f"- {mark} {a['name']} ({a['score']:.2f}): {a['reason']}")
            if a.get("detail", {}).get("raw") is not None:
                lines.append(f"  - judge said: `{_one_line(a['detail']['raw'])}`")
        lines.append("")
    return "\n".join(lines) + "\n"


_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.5em}h2{margin-top:1.6em;border-bottom:1px solid #ddd}
.badge{display:inline-block;padding:.15em .6em;border-radius:4px;color:#fff;font-weight:600}
.pass{background:#2e7d32}.fail{background:#c62828}.aborted{background:#6d4c41}
table{border-collapse:collapse;width:100%}td,th{border:1px solid #ddd;padding:.35em .6em;text-align:left;
vertical-align:top}th{background:#f5f5f5}pre{white-space:pre-wrap;background:#f7f7f7;padding:.6em;margin:.2em 0;
max-height:18em;overflow:auto}.case{border:1px solid #ddd;border-radius:6px;padding:.6em 1em;margin:1em 0}
.ok{color:#2e7d32}.bad{color:#c62828}dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em}
dt{font-weight:600}
"""


def render_html(run: RunRecord) -> str:
    s = run.summary
    esc = html.escape
    badge = (
        ("aborted", "ABORTED")
        if run.status != "complete"
        else (("pass", "PASS") if run.threshold_met else ("fail", "FAIL"))
    )
    facts = {
        "Target": f"{run.target} → {run.version or 'unknown'}",
        "Gateway": run.gateway_url,
        "Status": run.status + (f" — {run.abort_reason}" if run.abort_reason else ""),
        "Pass rate": f"{s['pass_rate']:.1%} ({s['passed']}/{s['total']}, {s['failed']} failed, {s['errors']} errors);"
        f" threshold {run.pass_threshold:.0%}",
        "Sampling": f"temperature {run.temperature:g}, seed {run.seed}"
        + (f"; re-scored from {run.cached_from}" if run.cached_from else ""),
        "Latency": f"mean {_ms(s['latency_ms']['mean'])}, p50 {_ms(s['latency_ms']['p50'])}, "
        f"p95 {_ms(s['latency_ms']['p95'])}",
        "Tokens": f"{s['tokens']['prompt']} prompt, {s['tokens']['completion']} completion",
        "Started": f"{run.started_at.isoformat()} by {run.created_by}",
        "Suite sha256": run.suite_sha256,
    }
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>Eval {esc(run.run_id)} - {esc(run.suite)}</title><style>{_CSS}</style></head><body>",
        f"<h1>Eval run {esc(run.run_id)}: suite <code>{esc(run.suite)}</code> "
        f"<span class='badge {badge[0]}'>{badge[1]}</span></h1>",
        "<dl>" + "".join(f"<dt>{esc(k)}</dt><dd>{esc(str(v))}</dd>" for k, v in facts.items()) + "</dl>",
        "<h2>Pass rate per assertion</h2>",
        _bar_chart(s["assertions"]),
        "<table><tr><th>Assertion</th><th>Type</th><th>Pass rate</th><th>Mean score</th><th>Errors</th></tr>",
    ]
    for name, a in s["assertions"].items():
        parts.append(
            f"<tr><td>{esc(name)}</td><td>{esc(a['type'])}</td><td>{a['pass_rate']:.1%} "
            f"({a['passed']}/{a['total']})</td><td>{a['mean_score']:.2f}</td><td>{a['errors']}</td></tr>"
        )
    parts.append("</table><h2>Worst cases</h2>")
    for case in worst_cases(run):
        cls = "ok" if case.passed else "bad"
        parts.append(
            f"<div class=case><h3 class={cls}>{esc(case.case_id)} — {'pass' if case.passed else 'FAIL'} "
            f"(score {case.score:.2f}, {_ms(case.latency_ms)}, {case.completion_tokens or 0} tokens)</h3>"
        )
        parts.append(f"<b>Input</b><pre>{esc(_input_text(case))}</pre>")
        if case.expected is not None:
            parts.append(f"<b>Expected</b><pre>{esc(json.dumps(case.expected, ensure_ascii=False))}</pre>")
        parts.append(f"<b>Output</b><pre>{esc(case.output if case.output is not None else '(none)')}</pre>")
        if case.error:
            parts.append(f"<p class=bad><b>Error:</b> {esc(case.error)}</p>")
        parts.append("<ul>")
        for a in case.assertions:
            mark = "<span class=ok>pass</span>" if a["passed"] else "<span class=bad>FAIL</span>"
            raw = a.get("detail", {}).get("raw")
            extra = f"<br><small>judge said: <code>{esc(_one_line(raw))}</code></small>" if raw is not None else ""
            parts.append(f"<li>{mark} <b>{esc(a['name'])}</b> ({a['score']:.2f}): {esc(a['reason'])}{extra}</li>")
        parts.append("</ul></div>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _bar_chart(assertions: dict[str, Any]) -> str:
    """A horizontal bar per assertion, pass rate 0-100 %, as inline SVG."""
    row, label_w, bar_w = 26, 220, 480
    height = row * max(1, len(assertions)) + 10
    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{label_w + bar_w + 70}' height='{height}' "
        "role='img' aria-label='pass rate per assertion'>"
    ]
    for i, (name, a) in enumerate(assertions.items()):
        y = 5 + i * row
        width = bar_w * a["pass_rate"]
        color = "#2e7d32" if a["pass_rate"] >= 0.9 else ("#f9a825" if a["pass_rate"] >= 0.5 else "#c62828")
        parts.append(
            f"<text x='{label_w - 8}' y='{y + 16}' text-anchor='end' font-size='13'>{html.escape(name)}</text>"
        )
        parts.append(f"<rect x='{label_w}' y='{y + 2}' width='{bar_w}' height='{row - 8}' fill='#eee'/>")
        parts.append(f"<rect x='{label_w}' y='{y + 2}' width='{width:.1f}' height='{row - 8}' fill='{color}'/>")
        parts.append(f"<text x='{label_w + bar_w + 6}' y='{y + 16}' font-size='13'>{a['pass_rate']:.0%}</text>")
    parts.append("</svg>")
    return "".join(parts)


def write_reports(run: RunRecord, directory: Path) -> tuple[Path, Path]:
    """Write ``<dir>/<run_id>.md`` and ``.html``; returns both paths."""
    directory.mkdir(parents=True, exist_ok=True)
    md, page = directory / f"{run.run_id}.md", directory / f"{run.run_id}.html"
    md.write_text(render_markdown(run))
    page.write_text(render_html(run))
    return md, page


def _input_text(case: CaseResult) -> str:
    if "messages" in case.request:
        return "\n".join(f"{m['role']}: {m['content']}" for m in case.request["messages"])
    return str(case.request.get("prompt", ""))


def _ms(value: float | None) -> str:
    return f"{value:.0f} ms" if value is not None else "—"


def _one_line(text: str) -> str:
    return " ".join(str(text).split())[:300]
