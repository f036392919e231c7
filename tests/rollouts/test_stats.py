"""The experiment statistics against scipy as the oracle, the confidence sequence's formulas and its validity
under peeking, and the verdict rule."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from scipy import stats as scipy_stats

from modelyard.rollouts import stats
from modelyard.rollouts.stats import (
    Direction,
    Summary,
    Verdict,
    chi_square_sf,
    compare_latency,
    compare_means,
    hodges_lehmann,
    judge,
    mann_whitney,
    mixture_e_value,
    mixture_half_width,
    mixture_rho,
    sample_ratio,
)


@pytest.fixture(params=["numpy", "pure"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with the numpy fast path and with the pure-Python path: both must give the same numbers."""
    if request.param == "pure":
        monkeypatch.setattr(stats, "_numpy", None)
    return str(request.param)


def _samples(seed: int, n: int, m: int, shift: float, rounded: bool = False) -> tuple[list[float], list[float]]:
    rng = random.Random(seed)
    control = [rng.lognormvariate(0.0, 0.5) for _ in range(n)]
    treatment = [rng.lognormvariate(shift, 0.5) for _ in range(m)]
    if rounded:  # many ties
        control = [round(v, 1) for v in control]
        treatment = [round(v, 1) for v in treatment]
    return control, treatment


@pytest.mark.parametrize(
    ("n", "m", "shift", "rounded"), [(40, 25, 0.3, False), (300, 500, 0.05, True), (7, 9, 0, False)]
)
def test_mann_whitney_matches_scipy(backend: str, n: int, m: int, shift: float, rounded: bool) -> None:
    control, treatment = _samples(n + m, n, m, shift, rounded)
    u, p = mann_whitney(control, treatment)
    expected = scipy_stats.mannwhitneyu(treatment, control, alternative="two-sided", method="asymptotic")
    assert u == pytest.approx(float(expected.statistic), rel=1e-12)
    assert p == pytest.approx(float(expected.pvalue), rel=1e-9)


@pytest.mark.parametrize(("n", "m", "rounded"), [(30, 41, False), (120, 90, True), (1, 1, False), (2, 3, False)])
def test_hodges_lehmann_is_the_median_and_order_statistics_of_all_differences(
    backend: str, n: int, m: int, rounded: bool
) -> None:
    control, treatment = _samples(n * m, n, m, 0.2, rounded)
    differences = np.sort(np.subtract.outer(np.array(treatment), np.array(control)).ravel())
    alpha = 0.05
    z = scipy_stats.norm.ppf(1 - alpha / 2)
    c = max(1, math.floor(n * m / 2 - z * math.sqrt(n * m * (n + m + 1) / 12)))
    shift, lower, upper = hodges_lehmann(control, treatment, alpha)
    assert shift == pytest.approx(float(np.median(differences)), abs=1e-12)
    assert lower == pytest.approx(float(differences[c - 1]), abs=1e-12)
    assert upper == pytest.approx(float(differences[n * m - c]), abs=1e-12)


def test_compare_latency_reads_the_shift_as_a_ratio() -> None:
    control, treatment = _samples(3, 800, 800, math.log(1.2))
    result = compare_latency("latency", control, treatment, alpha=0.05)
    assert result.effect == pytest.approx(0.2, abs=0.06)
    assert result.lower < result.effect < result.upper
    assert result.verdict is Verdict.WORSE and result.p_value < 1e-6
    assert (result.control_n, result.treatment_n) == (800, 800)
    # Splitting alpha over more looks widens the interval and keeps the p-value.
    cautious = compare_latency("latency", control, treatment, alpha=0.05, looks=20)
    assert cautious.upper - cautious.lower > result.upper - result.lower
    assert cautious.p_value == result.p_value


@pytest.mark.parametrize(("x", "df"), [(0.3, 1), (3.2, 1), (50.0, 1), (7.5, 2), (50.0, 3), (0.3, 4), (12.0, 9)])
def test_chi_square_survival_matches_scipy(x: float, df: int) -> None:
    assert chi_square_sf(x, df) == pytest.approx(float(scipy_stats.chi2.sf(x, df)), rel=1e-9)


def test_sample_ratio_catches_a_45_55_split_and_passes_a_fair_one() -> None:
    broken = sample_ratio([2250, 2750], [0.5, 0.5])
    expected = scipy_stats.chisquare([2250, 2750], [2500, 2500])
    assert broken.chi_square == pytest.approx(float(expected.statistic))
    assert broken.p_value == pytest.approx(float(expected.pvalue), rel=1e-6)
    assert broken.mismatch
    assert not sample_ratio([2480, 2520], [0.5, 0.5]).mismatch
    assert not sample_ratio([900, 100], [90, 10]).mismatch  # weights need not sum to one
    with pytest.raises(ValueError, match="one weight per arm"):
        sample_ratio([1, 2], [1.0])


def test_mixture_boundary_formulas() -> None:
    alpha, tuning = 0.05, 2000
    rho = mixture_rho(alpha, tuning)
    assert rho == pytest.approx(math.sqrt((-2 * math.log(alpha) + math.log(-2 * math.log(alpha) + 1)) / tuning))
    # Howard et al.'s sum form: |S_t| ≤ √(2(V + p) ln(√((V + p)/p)/alpha)), V = t·s², p = s²/rho²; divided by t.
    sigma, n = 1.7, 1234
    v, rho_sum = n * sigma**2, sigma**2 / rho**2
    by_sum = math.sqrt(2 * (v + rho_sum) * math.log(math.sqrt((v + rho_sum) / rho_sum) / alpha)) / n
    assert mixture_half_width(sigma, n, alpha, rho) == pytest.approx(by_sum, rel=1e-12)
    # The e-value crosses 1/alpha exactly where the interval's edge reaches zero.
    half = mixture_half_width(1.0, n, alpha, rho)
    z_edge = half / (1.0 / math.sqrt(n))
    assert mixture_e_value(z_edge, n, rho) == pytest.approx(1 / alpha, rel=1e-9)
    # Wider than the fixed-horizon interval, as the price of looking at any time.
    assert half > scipy_stats.norm.ppf(0.975) / math.sqrt(n)


def test_compare_means_effect_interval_and_verdicts() -> None:
    control = Summary.of_rate(20, 1000)
    worse = Summary.of_rate(80, 1000)
    result = compare_means("error_rate", control, worse, allowed_change=0.01)
    assert result.effect == pytest.approx(0.06)
    assert result.lower > 0 and result.verdict is Verdict.WORSE and result.breach
    assert result.e_value is not None and result.e_value > 20 and result.p_value == pytest.approx(1 / result.e_value)
    same = compare_means("error_rate", control, Summary.of_rate(21, 1000), allowed_change=0.01)
    assert same.verdict is Verdict.NO_DIFFERENCE_YET and not same.breach
    final = compare_means("error_rate", control, Summary.of_rate(21, 1000), allowed_change=0.01, final=True)
    assert final.verdict is Verdict.INCONCLUSIVE
    # Higher is better for a score: a drop is worse.
    score = compare_means(
        "feedback",
        Summary.of([1.0] * 600 + [0.0] * 400),
        Summary.of([1.0] * 400 + [0.0] * 600),
        direction=Direction.HIGHER_IS_BETTER,
    )
    assert score.effect == pytest.approx(-0.2) and score.verdict is Verdict.WORSE


def test_rate_of_a_clean_arm_still_has_uncertainty() -> None:
    """No errors yet is not the same as no errors ever: the interval stays open."""
    result = compare_means("error_rate", Summary.of_rate(0, 50), Summary.of_rate(0, 50), allowed_change=0.01)
    assert result.upper > 0.01 and not result.within_allowance


def test_confidence_sequence_stays_valid_when_peeked_after_every_batch() -> None:
    """A/A normal data, looked at every 50 observations up to 2 000: the interval must exclude the true zero in
    at most alpha of the streams (with margin for 250 streams: ≤ 8 %), where the naive z-test exceeds 20 %."""
    rng = np.random.default_rng(7)
    alpha = 0.05
    streams, horizon, look = 250, 2000, 50
    data = rng.normal(0.0, 1.0, size=(streams, horizon))
    arms = rng.random(size=(streams, horizon)) < 0.5
    sequential = naive = 0
    for values, arm in zip(data, arms, strict=True):
        seq_hit = naive_hit = False
        for seen in range(look, horizon + 1, look):
            a, b = values[:seen][~arm[:seen]], values[:seen][arm[:seen]]
            if len(a) < 2 or len(b) < 2:
                continue
            ca = Summary(len(a), float(a.mean()), float(a.var(ddof=1)))
            cb = Summary(len(b), float(b.mean()), float(b.var(ddof=1)))
            seq_hit = seq_hit or compare_means("m", ca, cb, alpha=alpha).verdict is not Verdict.NO_DIFFERENCE_YET
            naive_hit = naive_hit or stats.fixed_horizon_means(ca, cb, alpha)
        sequential += seq_hit
        naive += naive_hit
    assert sequential / streams <= 0.08
    assert naive / streams > 0.2


@pytest.mark.parametrize(
    ("effect", "lower", "upper", "direction", "allowed", "expected"),
    [
        (0.2, 0.1, 0.3, Direction.LOWER_IS_BETTER, 0.05, (Verdict.WORSE, True, False)),
        (0.03, 0.01, 0.04, Direction.LOWER_IS_BETTER, 0.05, (Verdict.WORSE, False, True)),  # real but allowed
        (-0.2, -0.3, -0.1, Direction.LOWER_IS_BETTER, 0.0, (Verdict.BETTER, False, True)),
        (0.0, -0.02, 0.02, Direction.LOWER_IS_BETTER, 0.05, (Verdict.NO_DIFFERENCE_YET, False, True)),
        (0.0, -0.1, 0.1, Direction.LOWER_IS_BETTER, 0.05, (Verdict.NO_DIFFERENCE_YET, False, False)),
        (-0.2, -0.3, -0.1, Direction.HIGHER_IS_BETTER, 0.05, (Verdict.WORSE, True, False)),
        (0.2, 0.1, 0.3, Direction.HIGHER_IS_BETTER, 0.05, (Verdict.BETTER, False, True)),
    ],
)
def test_judge(
    effect: float,
    lower: float,
    upper: float,
    direction: Direction,
    allowed: float,
    expected: tuple[Verdict, bool, bool],
) -> None:
    assert judge(effect, lower, upper, direction, allowed, final=False) == expected


def test_summary_of_values() -> None:
    summary = Summary.of([1.0, 2.0, 4.0])
    assert (summary.n, summary.mean) == (3, pytest.approx(7 / 3))
    assert summary.variance == pytest.approx(float(np.var([1.0, 2.0, 4.0], ddof=1)))
    assert Summary.of([]) == Summary(0, 0.0, 0.0)
    with pytest.raises(ValueError, match="both arms"):
        compare_means("m", Summary.of([]), summary)
