"""Run llama.cpp's ``llama-perplexity`` and read its numbers.

Two invocations make a quantization report:

1. the *base* model over the user's text with ``--kl-divergence-base FILE``: prints the base perplexity and
   saves the tokens and the base model's log-probabilities to FILE;
2. the *candidate* with ``--kl-divergence-base FILE --kl-divergence``: re-evaluates exactly those tokens (so the
   context size and chunks are the same by construction) and prints PPL(Q), PPL(Q)/PPL(base), the KL-divergence
   distribution and how often both models agree on the most likely next token ("Same top p").

llama-perplexity only prints the summary statistics when at least 100 tokens were scored (half of each chunk is
scored), so ``ctx_size * chunks`` must allow that; :func:`check_sizes` says so before anything runs.
"""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

_NUMBER = r"(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"
_PLUS_MINUS = r"\s*(?:±|\+/-)\s*"
MIN_SCORED_TOKENS = 100


class PerplexityError(RuntimeError):
    """llama-perplexity failed or printed something we cannot read; the message carries its last lines."""


@dataclass(frozen=True)
class BaseResult:
    ppl: float
    ppl_err: float | None
    seconds: float


@dataclass(frozen=True)
class KldResult:
    ppl_candidate: float
    ppl_candidate_err: float | None
    ppl_base: float
    ppl_ratio: float
    ppl_ratio_err: float | None
    kld_mean: float
    kld_mean_err: float | None
    kld_p99: float
    kld_median: float | None
    kld_max: float | None
    top_token_agreement: float  # fraction in [0, 1]
    top_token_agreement_err: float | None
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def check_sizes(ctx_size: int, chunks: int) -> None:
    scored = (ctx_size - 1 - ctx_size // 2) * chunks
    if ctx_size < 16:
        raise PerplexityError(f"context size {ctx_size} is too small (at least 16 tokens)")
    if scored < MIN_SCORED_TOKENS:
        need = -(-MIN_SCORED_TOKENS // (ctx_size - 1 - ctx_size // 2))
        raise PerplexityError(
            f"{chunks} chunk(s) of {ctx_size} tokens score only {scored} tokens; llama-perplexity needs at least "
            f"{MIN_SCORED_TOKENS} for KL-divergence statistics: use --chunks {need} or a larger --ctx-size"
        )


def parse_base(output: str, seconds: float = 0.0) -> BaseResult:
    match = re.search(rf"Final estimate: PPL = {_NUMBER}(?:{_PLUS_MINUS}{_NUMBER})?", output)
    if match is None:
        raise PerplexityError("llama-perplexity printed no 'Final estimate: PPL' line:\n" + _tail(output))
    return BaseResult(float(match.group(1)), _float(match.group(2)), seconds)


def parse_kl_divergence(output: str, seconds: float = 0.0) -> KldResult:
    def value(label: str, required: bool = True) -> tuple[float | None, float | None]:
        match = re.search(rf"^\s*{label}\s*:\s*{_NUMBER}(?:{_PLUS_MINUS}{_NUMBER})?", output, re.MULTILINE)
        if match is None:
            if required:
                raise PerplexityError(f"llama-perplexity printed no '{_unescape(label)}' line:\n" + _tail(output))
            return None, None
        return float(match.group(1)), _float(match.group(2))

    ppl_q, ppl_q_err = value(r"Mean PPL\(Q\)")
    ppl_base, _ = value(r"Mean PPL\(base\)")
    ratio, ratio_err = value(r"Mean PPL\(Q\)/PPL\(base\)")
    kld, kld_err = value(r"Mean\s+KLD")
    p99, _ = value(r"99\.0%\s+KLD")
    median, _ = value(r"Median\s+KLD", required=False)
    maximum, _ = value(r"Maximum KLD", required=False)
    top, top_err = value(r"Same top p")
    assert None not in (ppl_q, ppl_base, ratio, kld, p99, top)
    return KldResult(
        ppl_candidate=ppl_q,  # type: ignore[arg-type]
        ppl_candidate_err=ppl_q_err,
        ppl_base=ppl_base,  # type: ignore[arg-type]
        ppl_ratio=ratio,  # type: ignore[arg-type]
        ppl_ratio_err=ratio_err,
        kld_mean=kld,  # type: ignore[arg-type]
        kld_mean_err=kld_err,
        kld_p99=p99,  # type: ignore[arg-type]
        kld_median=median,
        kld_max=maximum,
        top_token_agreement=top / 100.0,  # type: ignore[operator]
        top_token_agreement_err=top_err / 100.0 if top_err is not None else None,
        seconds=seconds,
    )


def base_command(
    binary: Path, model: Path, text: Path, logits: Path, ctx_size: int, chunks: int, threads: int | None
) -> list[str]:
    argv = [str(binary), "-m", str(model), "-f", str(text), "-c", str(ctx_size), "--chunks", str(chunks)]
    argv += ["--kl-divergence-base", str(logits)]
    return argv + (["-t", str(threads)] if threads else [])


def candidate_command(binary: Path, model: Path, logits: Path, ctx_size: int, threads: int | None) -> list[str]:
    argv = [str(binary), "-m", str(model), "-c", str(ctx_size), "--kl-divergence-base", str(logits)]
    argv.append("--kl-divergence")
    return argv + (["-t", str(threads)] if threads else [])


def run_base(
    binary: Path,
    model: Path,
    text: Path,
    logits: Path,
    ctx_size: int,
    chunks: int,
    threads: int | None = None,
    timeout_s: float = 1800,
) -> tuple[BaseResult, str]:
    argv = base_command(binary, model, text, logits, ctx_size, chunks, threads)
    output, seconds = _run(argv, timeout_s)
    if "tokens, but you need at least" in output or "you need at least" in output:
        raise PerplexityError(
            f"the text {text} is too short for {chunks} chunks of {ctx_size} tokens:\n{_tail(output)}"
        )
    return parse_base(output, seconds), output


def run_candidate(
    binary: Path, model: Path, logits: Path, ctx_size: int, threads: int | None = None, timeout_s: float = 1800
) -> tuple[KldResult, str]:
    output, seconds = _run(candidate_command(binary, model, logits, ctx_size, threads), timeout_s)
    if "inconsistent vocabulary" in output:
        raise PerplexityError("base and candidate have different vocabularies; KL divergence needs the same tokenizer")
    return parse_kl_divergence(output, seconds), output


def _run(argv: list[str], timeout_s: float) -> tuple[str, float]:
    started = time.monotonic()
    try:
        completed = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise PerplexityError(f"llama-perplexity did not finish within {timeout_s:.0f} s: {' '.join(argv)}") from None
    except OSError as exc:
        raise PerplexityError(f"cannot run {argv[0]}: {exc}") from None
    output = completed.stdout + completed.stderr
    if completed.returncode != 0:
        raise PerplexityError(f"llama-perplexity exited with {completed.returncode}:\n{_tail(output)}")
    return output, time.monotonic() - started


def _float(text: str | None) -> float | None:
    return float(text) if text is not None else None


def _tail(output: str, lines: int = 12) -> str:
    return "\n".join(output.strip().splitlines()[-lines:])


def _unescape(label: str) -> str:
    return label.replace(r"\s+", " ").replace("\\", "")
