"""Reading llama-perplexity's output (recorded from the cached build: Q4_K_M base vs Q2_K, ctx 128, 6 chunks)."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelyard.evals.perplexity import PerplexityError, check_sizes, parse_base, parse_kl_divergence

DATA = Path(__file__).parent / "data"


def test_base_perplexity_is_read() -> None:
    result = parse_base((DATA / "perplexity-base.txt").read_text())
    assert (result.ppl, result.ppl_err) == (16.0457, 2.13563)


def test_kl_divergence_statistics_are_read() -> None:
    r = parse_kl_divergence((DATA / "perplexity-kld.txt").read_text())
    assert (r.ppl_candidate, r.ppl_base, r.ppl_ratio) == (33.689939, 16.045767, 2.099615)
    assert (r.kld_mean, r.kld_mean_err, r.kld_p99, r.kld_median, r.kld_max) == (0.682024, 0.048273, 4.754564,
                                                                                0.432431, 8.244165)  # fmt: skip
    assert r.top_token_agreement == pytest.approx(0.60053)
    assert r.ppl_ratio_err == 0.20118


def test_unreadable_output_and_too_few_tokens_are_explained() -> None:
    with pytest.raises(PerplexityError, match="printed no 'Final estimate: PPL' line"):
        parse_base("main: error: unable to load model")
    truncated = (DATA / "perplexity-kld.txt").read_text().split("====== KL divergence")[0]
    with pytest.raises(PerplexityError, match="printed no 'Mean KLD' line"):
        parse_kl_divergence(truncated)
    with pytest.raises(PerplexityError, match=r"score only 63 tokens.*use --chunks 2"):
        check_sizes(128, 1)
    check_sizes(128, 2)
