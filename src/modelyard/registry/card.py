"""Model cards: who a version is, where it came from, what it may be used for and what happened to it.

One JSON document is the source; the Markdown is rendered from it, so the two never disagree.
"""

from __future__ import annotations

from typing import Any

from modelyard.registry.records import EventRecord, ModelRecord, VersionRecord


def model_card(model: ModelRecord, version: VersionRecord, events: list[EventRecord]) -> dict[str, Any]:
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
    lines += ["", "## History", "", "| When | Who | What |", "| --- | --- | --- |"]
    lines += [f"| {e['at']} | {e['actor']} | {e['summary']} |" for e in card["events"]]
    return "\n".join(lines) + "\n"


def _count(value: int | None) -> str:
    if value is None:
        return "—"
    if value >= 1_000_000_000:
        return f"{value / 1e9:.2f} B ({value:,})"
    return f"{value / 1e6:.1f} M ({value:,})"
