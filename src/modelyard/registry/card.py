"""Model cards: who a version is, where it came from, what it may be used for and what happened to it.

One JSON document is the source; the Markdown is rendered from it, so the two never disagree.
"""

from __future__ import annotations

from typing import Any

from modelyard.registry.records import EventRecord, ModelRecord, VersionRecord


def model_card(
    model: ModelRecord,
    version: VersionRecord,
    events: list[EventRecord],
    evaluations: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``evaluations`` (eval runs and quant reports, see ``modelyard.evals.storage.version_evaluations``) links
    the version's evidence and its HTML reports from the card."""
    aliases = sorted(a.name for a in model.aliases if a.version == version.number)
    relevant = [e for e in events if e.version == version.number or version.number in (e.from_version, e.to_version)]
    return {
        "model": model.name,
        "version": version.number,
        "key": version.key,
        "description": model.description,
        "owner": model.owner,
        "tags": dict(model.tags),
        "aliases": aliases,
        "status": "archived" if version.archived else ("serving" if aliases else "registered"),
        "identity": {
            "artifact": version.artifact_uri,
            "sha256": version.sha256,
            "size_bytes": version.size_bytes,
            "format": version.format,
        },
        "architecture": {
            "architecture": version.architecture,
            "parameter_count": version.parameter_count,
            "context_length": version.context_length,
            "quantization": version.quantization,
            "gguf_name": version.header.get("metadata", {}).get("general.name"),
        },
        "license": version.license,
        "provenance": {
            "base_model": version.base_model,
            "parent_version": version.parent,
            "training_data": list(version.training_data),
            "fine_tuning_data": list(version.fine_tuning_data),
            "lineage_notes": version.lineage_notes,
            "created_by": version.created_by,
            "created_at": version.to_json()["created_at"],
            "archived_at": version.to_json()["archived_at"],
            "archived_by": version.archived_by,
        },
        "events": [e.to_json() | {"summary": e.describe()} for e in relevant],
        "evaluations": evaluations or {"eval_runs": [], "quant_reports": []},
    }


def render_markdown(card: dict[str, Any]) -> str:
    identity, arch, prov = card["identity"], card["architecture"], card["provenance"]
    lines = [
        f"# {card['key']}",
        "",
        card["description"] or "_No description._",
        "",
        f"- **Status:** {card['status']}" + (f" (aliases: {', '.join(card['aliases'])})" if card["aliases"] else ""),
        f"- **Owner:** {card['owner'] or '—'}",
        f"- **License:** {card['license'] or 'not declared'}",
    ]
    if card["tags"]:
        lines.append("- **Tags:** " + ", ".join(f"{k}={v}" for k, v in sorted(card["tags"].items())))
    lines += [
        "",
        "## Identity",
        "",
        "| Field | Value |",
        "| --- | --- |",
        f"| Artifact | `{identity['artifact']}` |",
        f"| sha256 | `{identity['sha256']}` |",
        f"| Size | {identity['size_bytes']:,} bytes |",
        f"| Format | {identity['format']} |",
        "",
        "## Architecture and quantization",
        "",
        "| Field | Value |",
        "| --- | --- |",
        f"| Architecture | {arch['architecture'] or '—'} |",
        f"| Parameters | {_count(arch['parameter_count'])} |",
        f"| Context length | {arch['context_length'] or '—'} |",
        f"| Quantization | {arch['quantization'] or '—'} |",
        "",
        "## Provenance",
        "",
        f"- **Base model:** {prov['base_model'] or '—'}",
        f"- **Derived from:** {prov['parent_version'] or '—'}",
        f"- **Training data:** {', '.join(prov['training_data']) or '—'}",
        f"- **Fine-tuning data:** {', '.join(prov['fine_tuning_data']) or '—'}",
        f"- **Registered by** {prov['created_by']} at {prov['created_at']}",
    ]
    if prov["archived_at"]:
        lines.append(f"- **Archived by** {prov['archived_by']} at {prov['archived_at']}")
    if prov["lineage_notes"]:
        lines += ["", "### Lineage notes", "", prov["lineage_notes"]]
    lines += _evaluation_lines(card.get("evaluations") or {})
    lines += ["", "## History", "", "| When | Who | What |", "| --- | --- | --- |"]
    lines += [f"| {e['at']} | {e['actor']} | {e['summary']} |" for e in card["events"]]
    return "\n".join(lines) + "\n"


def _count(value: int | None) -> str:
    if value is None:
        return "—"
    if value >= 1_000_000_000:
        return f"{value / 1e9:.2f} B ({value:,})"
    return f"{value / 1e6:.1f} M ({value:,})"


def _evaluation_lines(evaluations: dict[str, Any]) -> list[str]:
    lines = ["", "## Evaluations", ""]
    quants, runs = evaluations.get("quant_reports", []), evaluations.get("eval_runs", [])
    if not quants and not runs:
        return [*lines, "_No evaluations recorded._"]
    if quants:
        lines += [
            "| Quant report | Base | PPL base → this | PPL ratio | KLD mean | KLD p99 | Top-token agreement |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        lines += [
            f"| {q['report_id']} | {q['base']} | {q['ppl_base']:.2f} → {q['ppl_candidate']:.2f} | "
            f"{q['ppl_ratio']:.3f} | {q['kld_mean']:.4f} | {q['kld_p99']:.3f} | {q['top_token_agreement']:.1%} |"
            for q in quants
        ]
        lines.append("")
    if runs:
        lines += ["| Eval run | Suite | Status | Pass rate | Report |", "| --- | --- | --- | --- | --- |"]
        lines += [
            f"| {r['run_id']} | {r['suite']} | {r['status']} | {r['pass_rate']:.1%} of {r['total']} | "
            + (f"[HTML]({_file_url(r['report'])})" if r["report"] else "—")
            + " |"
            for r in runs
        ]
    return lines


def _file_url(path: str) -> str:
    return path if "://" in path else "file://" + path
