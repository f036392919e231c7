"""Quantization quality report: a candidate version against its base on the user's text, stored as provenance.

The numbers (PPL of both, the PPL ratio, mean and p99 KL divergence, top-token agreement) go into
``quant_reports`` against the *candidate* version; versions themselves are immutable, so the report is its own
row, shown by ``models show`` and the model card.
"""

from __future__ import annotations

import hashlib
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

from modelyard.evals.perplexity import check_sizes, run_base, run_candidate
from modelyard.evals.records import QuantRecord
from modelyard.registry.records import VersionRecord
from modelyard.store.base import utcnow

Log = Callable[[str], None]


def measure(
    binary: Path,
    base: VersionRecord,
    candidate: VersionRecord,
    text: Path,
    ctx_size: int,
    chunks: int,
    threads: int | None,
    actor: str,
    log: Log = lambda _line: None,
) -> QuantRecord:
    """Run llama-perplexity twice (base saves logits, candidate compares) and build the report."""
    check_sizes(ctx_size, chunks)
    if not text.is_file():
        raise FileNotFoundError(f"text file not found: {text}")
    text_sha256 = hashlib.sha256(text.read_bytes()).hexdigest()
    with tempfile.TemporaryDirectory(prefix="modelyard-kld-") as workdir:
        logits = Path(workdir) / "base-logits.kld"
        log(f"llama-perplexity: {base.key} over {text.name} (ctx {ctx_size}, {chunks} chunks) …")
        base_result, _ = run_base(binary, base.artifact_path, text, logits, ctx_size, chunks, threads)
        log(f"  PPL {base_result.ppl:.4f} in {base_result.seconds:.1f} s; KL divergence of {candidate.key} …")
        kld, _ = run_candidate(binary, candidate.artifact_path, logits, ctx_size, threads)
        log(f"  done in {kld.seconds:.1f} s")
    return QuantRecord(
        report_id="quant-" + uuid.uuid4().hex[:12],
        base=base.key,
        candidate=candidate.key,
        text_path=str(text.absolute()),
        text_sha256=text_sha256,
        ctx_size=ctx_size,
        chunks=chunks,
        ppl_base=base_result.ppl,
        ppl_candidate=kld.ppl_candidate,
        ppl_ratio=kld.ppl_ratio,
        kld_mean=kld.kld_mean,
        kld_p99=kld.kld_p99,
        top_token_agreement=kld.top_token_agreement,
        created_by=actor,
        created_at=utcnow(),
        detail={
            "base_sha256": base.sha256,
            "candidate_sha256": candidate.sha256,
            "base_quantization": base.quantization,
            "candidate_quantization": candidate.quantization,
            "ppl_base_err": base_result.ppl_err,
            "ppl_base_in_kld_run": kld.ppl_base,
            "kld": kld.to_json(),
            "seconds": {"base": base_result.seconds, "candidate": kld.seconds},
            "threads": threads,
        },
    )


def render_quant(report: QuantRecord) -> str:
    d = report.detail.get("kld", {})
    return "\n".join(
        [
            f"Quantization report {report.report_id}: {report.candidate} "
            f"({report.detail.get('candidate_quantization', '?')}) vs base {report.base} "
            f"({report.detail.get('base_quantization', '?')})",
            f"  text {report.text_path} (sha256 {report.text_sha256[:12]}…), "
            f"ctx {report.ctx_size}, {report.chunks} chunks",
            f"  PPL base       {report.ppl_base:10.4f}",
            f"  PPL candidate  {report.ppl_candidate:10.4f}" + _err(d.get("ppl_candidate_err")),
            f"  PPL ratio      {report.ppl_ratio:10.4f}" + _err(d.get("ppl_ratio_err")),
            f"  KLD mean       {report.kld_mean:10.6f}" + _err(d.get("kld_mean_err")),
            f"  KLD p99        {report.kld_p99:10.6f}",
            f"  top-token agreement {report.top_token_agreement:.2%}",
        ]
    )


def _err(value: float | None) -> str:
    return f" ± {value:.4f}" if value is not None else ""
