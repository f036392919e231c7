"""Readable tables for registry records (the CLI's only presentation code)."""

from __future__ import annotations

from rich.table import Table

from modelyard.registry.records import EventRecord, ModelRecord, VersionRecord


def _size(size: int) -> str:
    return f"{size / 1e6:.0f} MB" if size < 1e9 else f"{size / 1e9:.2f} GB"


def _params(count: int | None) -> str:
    if count is None:
        return "—"
    return f"{count / 1e9:.2f}B" if count >= 1e9 else f"{count / 1e6:.0f}M"


def models_table(models: list[ModelRecord]) -> Table:
    table = Table(title="Registered models", title_justify="left")
    for column in ("Model", "Production", "Aliases", "Versions", "Owner", "Description"):
        table.add_column(column, overflow="fold")
    for model in models:
        others = ", ".join(f"{a.name}→{a.version}" for a in model.aliases if a.name != "production")
        active = len(model.active_versions())
        archived = len(model.versions) - active
        count = f"{active}" + (f" (+{archived} archived)" if archived else "")
        production = str(model.production) if model.production is not None else "—"
        table.add_row(model.name, production, others or "—", count, model.owner or "—", model.description[:60])
    return table


def versions_table(model: ModelRecord, include_archived: bool) -> Table:
    table = Table(title=f"{model.name}: versions", title_justify="left")
    for column in ("Version", "Aliases", "Quant", "Params", "Size", "sha256", "Created", "By", "Status"):
        table.add_column(column, overflow="fold")
    by_version: dict[int, list[str]] = {}
    for alias in model.aliases:
        by_version.setdefault(alias.version, []).append(alias.name)
    for version in model.versions:
        if version.archived and not include_archived:
            continue
        table.add_row(
            str(version.number),
            ", ".join(sorted(by_version.get(version.number, []))) or "—",
            version.quantization or "—",
            _params(version.parameter_count),
            _size(version.size_bytes),
            version.sha256[:12],
            version.created_at.strftime("%Y-%m-%d %H:%M"),
            version.created_by,
            "archived" if version.archived else "active",
        )
    return table


def version_table(version: VersionRecord) -> Table:
    table = Table(title=version.key, title_justify="left", show_header=False)
    table.add_column("Field", style="bold")
    table.add_column("Value", overflow="fold")
    for field, value in (
        ("artifact", version.artifact_uri),
        ("sha256", version.sha256),
        ("size", f"{version.size_bytes:,} bytes"),
        ("format", version.format),
        ("architecture", version.architecture),
        ("parameters", f"{version.parameter_count:,}" if version.parameter_count else "—"),
        ("context length", str(version.context_length or "—")),
        ("quantization", version.quantization),
        ("license", version.license or "—"),
        ("base model", version.base_model or "—"),
        ("parent", version.parent or "—"),
        ("training data", ", ".join(version.training_data) or "—"),
        ("fine-tuning data", ", ".join(version.fine_tuning_data) or "—"),
        ("lineage notes", version.lineage_notes or "—"),
        ("created", f"{version.created_at.isoformat()} by {version.created_by}"),
        ("archived", f"{version.archived_at.isoformat()} by {version.archived_by}" if version.archived_at else "no"),
    ):
        table.add_row(field, value)
    return table


def events_table(events: list[EventRecord], title: str = "History") -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("#", "When (UTC)", "Who", "What"):
        table.add_column(column, overflow="fold")
    for event in events:
        table.add_row(str(event.id), event.at.strftime("%Y-%m-%d %H:%M:%S"), event.actor, event.describe())
    return table


def evaluations_table(key: str, evaluations: dict) -> Table:
    """A version's evidence: quant reports (as candidate) and recent eval runs, with report paths."""
    table = Table(title=f"{key}: evaluations", title_justify="left")
    for column in ("Kind", "Id", "Result", "Detail"):
        table.add_column(column, overflow="fold")
    for q in evaluations.get("quant_reports", []):
        table.add_row(
            "quant",
            q["report_id"],
            f"PPL ratio {q['ppl_ratio']:.3f}, KLD mean {q['kld_mean']:.4f} p99 {q['kld_p99']:.3f}, "
            f"top-token {q['top_token_agreement']:.1%}",
            f"vs {q['base']} (PPL {q['ppl_base']:.2f} → {q['ppl_candidate']:.2f}), ctx {q['ctx_size']} x {q['chunks']}",
        )
    for r in evaluations.get("eval_runs", []):
        table.add_row(
            f"suite {r['suite']}",
            r["run_id"],
            f"{r['status']}: {r['pass_rate']:.1%} of {r['total']} "
            f"({'meets' if r['threshold_met'] else 'misses'} {r['pass_threshold']:.0%})",
            r["report"] or "—",
        )
    if not evaluations.get("quant_reports") and not evaluations.get("eval_runs"):
        table.add_row("—", "—", "no evaluations yet", "`modelyard eval run` / `modelyard eval quant`")
    return table
