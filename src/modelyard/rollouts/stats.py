"""The statistics that judge an experiment: pure functions, no I/O, standard library only.

Three tests, each chosen for what it must survive:

* **Latency-type metrics** (end-to-end latency, time to first token, time per output token) are skewed and
  heavy-tailed, so they are compared by rank: the Mann-Whitney U test, with the Hodges-Lehmann estimate of the
  shift and its distribution-free confidence interval, as Kayenta's judge does. The shift is taken on the
  logarithm of the values (ranks do not change under a monotone transform, the p-value is the same), so the effect
  reads as a ratio: ``0.10`` is "the candidate is 10 % slower". A rank test is a fixed-horizon test; the judge
  keeps it valid under repeated looks by splitting alpha over the planned number of looks (Bonferroni), which holds
  for any stopping rule over those looks.
* **Rates and means** (error rate, feedback score, live eval pass rate) use an *anytime-valid* test: the two-sided
  normal-mixture confidence sequence of Howard, Ramdas, McAuliffe and Sekhon (2021), the one GrowthBook's
  sequential mode uses. Its interval may be looked at after every request and the chance that it *ever* excludes
  the true difference stays ≤ alpha; its e-value (the mixture martingale) gives the matching anytime p-value 1/E.
* **Sample ratio mismatch**: Pearson's chi-square of the arms' counts against the allocation. A broken split
  (a sticky key that sends one kind of user to one arm, an arm that fails before it logs) invalidates every other
  comparison, so it halts the experiment; the threshold is strict (p < 0.001) because it is checked at every look.

Every comparison returns a :class:`Comparison`: the effect, its interval, the p-value (and e-value where there is
one), the samples per arm, and a verdict in plain words.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from statistics import NormalDist
from typing import Any

try:  # optional: the same counts, vectorised, for the simulator's thousands of comparisons
    import numpy as _numpy
except ImportError:  # pragma: no cover - numpy comes with the test extra, not with the product
    _numpy = None  # type: ignore[assignment]

_NORMAL = NormalDist()
_LOG_FLOOR = 1e-6  # seconds: a latency of zero (a cached or failed answer) still has a logarithm


class Verdict(StrEnum):
    BETTER = "better"
    WORSE = "worse"
    NO_DIFFERENCE_YET = "no detectable difference yet"
    INCONCLUSIVE = "inconclusive at the maximum duration"


class Direction(StrEnum):
    """Which way is good for a metric: latency and errors should go down, scores up."""

    LOWER_IS_BETTER = "lower"
    HIGHER_IS_BETTER = "higher"


@dataclass(frozen=True)
class Comparison:
    """Treatment against control on one metric.

    ``effect``, ``lower`` and ``upper`` are on the metric's effect scale: a relative shift for rank-tested metrics
    (``0.1`` = 10 % higher than control), an absolute difference for rates and means (``0.02`` = two percentage
    points). ``breach`` and ``within_allowance`` are the guardrail's two answers: significantly worse *and* by more
    than the allowed change; or shown (by the interval's bad end) to be inside the allowed change.
    """

    metric: str
    test: str
    control_n: int
    treatment_n: int
    control_value: float
    treatment_value: float
    effect: float
    lower: float
    upper: float
    p_value: float
    e_value: float | None
    alpha: float
    allowed_change: float
    direction: Direction
    verdict: Verdict
    breach: bool
    within_allowance: bool

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["direction"] = self.direction.value
        data["verdict"] = self.verdict.value
        return data


@dataclass(frozen=True)
class Summary:
    """Sufficient statistics of one arm for a mean: what a SQL aggregate returns (count, mean, variance)."""

    n: int
    mean: float
    variance: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        n = len(values)
        if n == 0:
            return cls(0, 0.0, 0.0)
        mean = math.fsum(values) / n
        variance = math.fsum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
        return cls(n, mean, variance)

    @classmethod
    def of_rate(cls, successes: int, n: int) -> Summary:
        """A proportion. Its variance is taken at (k + ½)/(n + 1), so that an arm with no errors yet is not
        treated as known to have none (a zero variance would give a zero-width interval)."""
        if n == 0:
            return cls(0, 0.0, 0.0)
        shrunk = (successes + 0.5) / (n + 1)
        return cls(n, successes / n, shrunk * (1.0 - shrunk))


@dataclass(frozen=True)
class SampleRatio:
    counts: tuple[int, ...]
    expected: tuple[float, ...]
    chi_square: float
    p_value: float
    mismatch: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- verdicts -------------------------------------------------------------------------------------------------


def judge(
    effect: float,
    lower: float,
    upper: float,
    direction: Direction,
    allowed_change: float,
    final: bool,
) -> tuple[Verdict, bool, bool]:
    """Verdict, breach and within-allowance from an effect and its interval (pure, shared by every test).

    The interval is turned so that positive means "worse". Worse and better need the whole interval on one side
    of zero; a *breach* needs that and an estimate beyond the allowed change (Kayenta's effect-size rule, so a
    significant but negligible slowdown on a huge sample does not roll back); *within allowance* needs the
    interval's worse end inside the allowed change, so a candidate is passed on evidence, never on silence.
    """
    if direction is Direction.HIGHER_IS_BETTER:
        effect, lower, upper = -effect, -upper, -lower
    if lower > 0:
        verdict = Verdict.WORSE
    elif upper < 0:
        verdict = Verdict.BETTER
    else:
        verdict = Verdict.INCONCLUSIVE if final else Verdict.NO_DIFFERENCE_YET
    breach = lower > 0 and effect > allowed_change
    within = upper < allowed_change
    return verdict, breach, within


# --- Mann-Whitney U and Hodges-Lehmann ------------------------------------------------------------------------


def mann_whitney(control: Sequence[float], treatment: Sequence[float]) -> tuple[float, float]:
    """Two-sided Mann-Whitney U test, normal approximation with tie and continuity corrections.

    Returns (U of the treatment, p-value). U counts the pairs where the treatment value is larger (ties count ½);
    under no difference its mean is n·m/2 and its variance n·m/12·((N + 1) - Σ(t³ - t)/(N(N - 1))).
    """
    n, m = len(control), len(treatment)
    if n == 0 or m == 0:
        return 0.0, 1.0
    total = n + m
    rank_sum, tie_term = _rank_sum(control, treatment)
    u = rank_sum - m * (m + 1) / 2.0
    mean_u = n * m / 2.0
    variance = n * m / 12.0 * ((total + 1) - tie_term / (total * (total - 1))) if total > 1 else 0.0
    if variance <= 0:
        return u, 1.0
    z = (abs(u - mean_u) - 0.5) / math.sqrt(variance)
    return u, min(1.0, 2.0 * (1.0 - _NORMAL.cdf(max(z, 0.0))))


def _rank_sum(control: Sequence[float], treatment: Sequence[float]) -> tuple[float, float]:
    """The treatment's sum of midranks in the pooled sample, and Σ(t³ - t) over groups of ties."""
    if _numpy is not None and len(control) + len(treatment) >= 256:
        pooled = _numpy.concatenate([_numpy.asarray(control, dtype=float), _numpy.asarray(treatment, dtype=float)])
        _, inverse, counts = _numpy.unique(pooled, return_inverse=True, return_counts=True)
        midranks = _numpy.cumsum(counts) - (counts - 1) / 2.0
        ranks = midranks[inverse]
        return float(ranks[len(control) :].sum()), float((counts.astype(float) ** 3 - counts).sum())
    tagged = sorted([(v, 0) for v in control] + [(v, 1) for v in treatment])
    total = len(tagged)
    rank_sum = 0.0
    tie_term = 0.0
    i = 0
    while i < total:
        j = i
        while j + 1 < total and tagged[j + 1][0] == tagged[i][0]:
            j += 1
        midrank = (i + j) / 2.0 + 1.0
        size = j - i + 1
        if size > 1:
            tie_term += size**3 - size
        rank_sum += midrank * sum(1 for k in range(i, j + 1) if tagged[k][1] == 1)
        i = j + 1
    return rank_sum, tie_term


def _count_at_most(xs: Sequence[float], ys: Sequence[float], d: float) -> int:
    """#{(i, j): ys[j] - xs[i] ≤ d} for sorted xs and ys: one merge-like pass, n + m steps."""
    j = 0
    m = len(ys)
    total = 0
    for x in xs:
        limit = x + d
        while j < m and ys[j] <= limit:
            j += 1
        total += j
    return total


def _kth_difference(xs: Sequence[float], ys: Sequence[float], k: int) -> float:
    """The k-th smallest (1-based) of the n·m pairwise differences ys[j] - xs[i], exactly, without forming them.

    Bisection on the value narrows (lo, hi] until it holds only a few differences (the count of differences ≤ d
    is monotone in d and costs one pass over sorted arrays), then those few are listed and the right one picked:
    about log₂(n·m) counting rounds where the naive way needs n·m memory. Where numpy is installed the passes are
    vectorised (the same integers and the same subtractions, so the same answer, ~50x faster).
    """
    pairs = len(xs) * len(ys)
    k = min(max(k, 1), pairs)
    lo = ys[0] - xs[-1]
    hi = ys[-1] - xs[0]
    if k == 1:
        return lo
    if k == pairs:
        return hi
    lo = math.nextafter(lo, -math.inf)  # the bracket is (lo, hi]: count(lo) < k ≤ count(hi)
    vector = _numpy is not None and pairs >= 4096
    if vector:
        x_array, y_array = _numpy.asarray(xs), _numpy.asarray(ys)

        def count_at_most(d: float) -> int:
            return int(_numpy.searchsorted(y_array, x_array + d, side="right").sum())

        budget = 64
    else:

        def count_at_most(d: float) -> int:
            return _count_at_most(xs, ys, d)

        budget = len(xs) + len(ys)
    below, at_hi = 0, pairs
    while at_hi - below > budget:
        mid = (lo + hi) / 2.0
        if mid in (lo, hi):
            break
        count = count_at_most(mid)
        if count >= k:
            hi, at_hi = mid, count
        else:
            lo, below = mid, count
    inside = _differences_between(xs, ys, lo, hi, vector)
    inside.sort()
    return inside[k - below - 1]


def _differences_between(xs: Sequence[float], ys: Sequence[float], lo: float, hi: float, vector: bool) -> list[float]:
    """Every difference ys[j] - xs[i] in (lo, hi]."""
    if not vector:
        right = bisect.bisect_right
        inside: list[float] = []
        for x in xs:
            inside.extend(y - x for y in ys[right(ys, lo + x) : right(ys, hi + x)])
        return inside
    x_array, y_array = _numpy.asarray(xs), _numpy.asarray(ys)
    starts = _numpy.searchsorted(y_array, x_array + lo, side="right")
    stops = _numpy.searchsorted(y_array, x_array + hi, side="right")
    found: list[float] = []
    for offset in range(int((stops - starts).max(initial=0))):
        chosen = starts + offset < stops
        found.extend((y_array[starts[chosen] + offset] - x_array[chosen]).tolist())
    return found


def hodges_lehmann(control: Sequence[float], treatment: Sequence[float], alpha: float) -> tuple[float, float, float]:
    """Hodges-Lehmann shift (median of treatment - control over all pairs) and its 1 - alpha interval.

    The interval's ends are the order statistics C and n·m + 1 - C of the pairwise differences, with
    C = n·m/2 - z(1 - alpha/2)·√(n·m(n + m + 1)/12) (Hollander & Wolfe, *Nonparametric Statistical Methods*, 4.3).
    """
    xs, ys = sorted(control), sorted(treatment)
    n, m = len(xs), len(ys)
    pairs = n * m
    if pairs % 2:
        shift = _kth_difference(xs, ys, pairs // 2 + 1)
    else:
        shift = (_kth_difference(xs, ys, pairs // 2) + _kth_difference(xs, ys, pairs // 2 + 1)) / 2.0
    z = _NORMAL.inv_cdf(1.0 - alpha / 2.0)
    c = math.floor(pairs / 2.0 - z * math.sqrt(pairs * (n + m + 1) / 12.0))
    c = max(c, 1)
    return shift, _kth_difference(xs, ys, c), _kth_difference(xs, ys, pairs + 1 - c)


def compare_latency(
    metric: str,
    control: Sequence[float],
    treatment: Sequence[float],
    *,
    alpha: float = 0.05,
    looks: int = 1,
    allowed_change: float = 0.0,
    direction: Direction = Direction.LOWER_IS_BETTER,
    final: bool = False,
) -> Comparison:
    """Rank comparison of a latency-type metric as a relative shift, alpha split over ``looks`` planned looks."""
    if not control or not treatment:
        raise ValueError(f"{metric}: both arms need at least one sample")
    level = alpha / max(looks, 1)
    log_c = [math.log(max(v, _LOG_FLOOR)) for v in control]
    log_t = [math.log(max(v, _LOG_FLOOR)) for v in treatment]
    _, p_value = mann_whitney(log_c, log_t)
    shift, low, high = hodges_lehmann(log_c, log_t, level)
    effect, lower, upper = math.expm1(shift), math.expm1(low), math.expm1(high)
    verdict, breach, within = judge(effect, lower, upper, direction, allowed_change, final)
    if p_value >= level and verdict in (Verdict.BETTER, Verdict.WORSE):
        # The interval and the test use the same normal approximation but round differently at the edge.
        verdict = Verdict.INCONCLUSIVE if final else Verdict.NO_DIFFERENCE_YET
        breach = False
    return Comparison(
        metric=metric,
        test="mann-whitney",
        control_n=len(control),
        treatment_n=len(treatment),
        control_value=_median(control),
        treatment_value=_median(treatment),
        effect=effect,
        lower=lower,
        upper=upper,
        p_value=p_value,
        e_value=None,
        alpha=alpha,
        allowed_change=allowed_change,
        direction=direction,
        verdict=verdict,
        breach=breach,
        within_allowance=within,
    )


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2.0


# --- the normal-mixture confidence sequence -------------------------------------------------------------------


def mixture_rho(alpha: float, tuning_n: int) -> float:
    """The mixing parameter that makes the boundary tightest near ``tuning_n`` samples (GrowthBook's choice)."""
    log_term = -2.0 * math.log(alpha)
    return math.sqrt((log_term + math.log(log_term + 1.0)) / tuning_n)


def mixture_half_width(sigma: float, n: int, alpha: float, rho: float) -> float:
    """Half-width of the two-sided normal-mixture confidence sequence for a mean of ``n`` observations with
    per-observation standard deviation s: s·√(2(n·r² + 1)/(n²·r²) · ln(√(n·r² + 1)/alpha)) with r = rho
    (Howard et al. 2021, the normal mixture of eq. 14, in per-observation form)."""
    a = n * rho * rho
    return sigma * math.sqrt(2.0 * (a + 1.0) / (n * a) * math.log(math.sqrt(a + 1.0) / alpha))


def mixture_e_value(z: float, n: int, rho: float) -> float:
    """The mixture martingale at the z-statistic z: exp(z²·n·r²/(2(n·r² + 1)))/√(n·r² + 1), r = rho.

    It rejects (≥ 1/alpha) exactly when the confidence sequence excludes zero; 1/E is an anytime-valid p-value."""
    a = n * rho * rho
    exponent = z * z * a / (2.0 * (a + 1.0))
    return math.exp(min(exponent, 700.0)) / math.sqrt(a + 1.0)


def compare_means(
    metric: str,
    control: Summary,
    treatment: Summary,
    *,
    alpha: float = 0.05,
    tuning_n: int = 2000,
    allowed_change: float = 0.0,
    direction: Direction = Direction.LOWER_IS_BETTER,
    final: bool = False,
) -> Comparison:
    """Anytime-valid comparison of two means (a rate is the mean of 0/1): the difference with its confidence
    sequence. The two arms enter as one stream of N = n₁ + n₂ observations whose per-observation variance is
    N·Var(Δ̂), Var(Δ̂) = s₁²/n₁ + s₂²/n₂, as in GrowthBook's sequential engine."""
    if control.n == 0 or treatment.n == 0:
        raise ValueError(f"{metric}: both arms need at least one sample")
    effect = treatment.mean - control.mean
    var_effect = control.variance / control.n + treatment.variance / treatment.n
    total = control.n + treatment.n
    rho = mixture_rho(alpha, tuning_n)
    if var_effect <= 0.0:
        half, z = 0.0, 0.0 if effect == 0 else math.inf
    else:
        half = mixture_half_width(math.sqrt(var_effect * total), total, alpha, rho)
        z = effect / math.sqrt(var_effect)
    e_value = mixture_e_value(z, total, rho) if math.isfinite(z) else math.inf
    lower, upper = effect - half, effect + half
    verdict, breach, within = judge(effect, lower, upper, direction, allowed_change, final)
    return Comparison(
        metric=metric,
        test="normal-mixture",
        control_n=control.n,
        treatment_n=treatment.n,
        control_value=control.mean,
        treatment_value=treatment.mean,
        effect=effect,
        lower=lower,
        upper=upper,
        p_value=min(1.0, 1.0 / e_value) if e_value > 0 else 1.0,
        e_value=e_value,
        alpha=alpha,
        allowed_change=allowed_change,
        direction=direction,
        verdict=verdict,
        breach=breach,
        within_allowance=within,
    )


def fixed_horizon_means(control: Summary, treatment: Summary, alpha: float = 0.05) -> bool:
    """The naive two-sample z-test, significant at alpha: correct once, at a horizon fixed in advance; the simulator
    peeks at it like the sequential test to show how far its false-positive rate climbs."""
    var_effect = control.variance / control.n + treatment.variance / treatment.n
    if var_effect <= 0.0:
        return False
    z = abs(treatment.mean - control.mean) / math.sqrt(var_effect)
    return z > _NORMAL.inv_cdf(1.0 - alpha / 2.0)


# --- sample ratio mismatch ------------------------------------------------------------------------------------


def sample_ratio(counts: Sequence[int], weights: Sequence[float], threshold: float = 0.001) -> SampleRatio:
    """Pearson's chi-square of observed arm counts against the allocation weights (k - 1 degrees of freedom)."""
    if len(counts) != len(weights) or len(counts) < 2:
        raise ValueError("sample ratio needs one weight per arm and at least two arms")
    total = sum(counts)
    weight_sum = float(sum(weights))
    expected = tuple(total * w / weight_sum for w in weights)
    if total == 0:
        return SampleRatio(tuple(counts), expected, 0.0, 1.0, False)
    chi = math.fsum((c - e) ** 2 / e for c, e in zip(counts, expected, strict=True) if e > 0)
    p_value = chi_square_sf(chi, len(counts) - 1)
    return SampleRatio(tuple(counts), expected, chi, p_value, p_value < threshold)


def chi_square_sf(x: float, df: int) -> float:
    """P(χ²_df > x): the regularized upper incomplete gamma Q(df/2, x/2)."""
    if x <= 0:
        return 1.0
    return _gamma_q(df / 2.0, x / 2.0)


def _gamma_q(a: float, x: float) -> float:
    """Q(a, x) by its series for x < a + 1, its continued fraction otherwise (Numerical Recipes, 6.2)."""
    log_prefix = -x + a * math.log(x) - math.lgamma(a)
    if x < a + 1.0:
        term = total = 1.0 / a
        ap = a
        for _ in range(500):
            ap += 1.0
            term *= x / ap
            total += term
            if abs(term) < abs(total) * 1e-15:
                break
        return max(0.0, 1.0 - total * math.exp(log_prefix))
    tiny = 1e-300
    b = x + 1.0 - a
    c = 1.0 / tiny
    d = 1.0 / b
    h = d
    for i in range(1, 500):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return min(1.0, math.exp(log_prefix) * h)
