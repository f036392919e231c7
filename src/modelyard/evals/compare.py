"""Compare two runs of a suite: per-assertion pass rates, flipped cases, McNemar's test, latency/token deltas.

Pure: takes two stored runs, returns a plain structure that the CLI prints and ``--json`` emits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelyard.evals.records import RunRecord
from modelyard.evals.stats import McNemar, paired_outcomes


@dataclass(frozen=True)
class Comparison:
    a: RunRecord
    b: RunRecord
    test: McNemar
    paired: int
    only_in_a: tuple[str, ...]
    only_in_b: tuple[str, ...]
    flipped: tuple[tuple[str, bool, bool], ...]  # case id, passed in A, passed in B
    assertions: tuple[tuple[str, float | None, float | None], ...]  # name, pass rate A, pass rate B
    alpha: float = 0.05

    @property
    def significant(self) -> bool:
        return self.test.significant(self.alpha)

    def verdict(self) -> str:
        if not self.significant:
            return f"no significant difference (p={self.test.p_value:.4g}, {self.test.discordant} discordant pairs)"
        direction = "B is worse" if self.test.only_a > self.test.only_b else "B is better"
        return f"significant: {direction} (p={self.test.p_value:.4g}, {self.test.discordant} discordant pairs)"

    def deltas(self) -> dict[str, Any]:
        sa, sb = self.a.summary, self.b.summary
        out: dict[str, Any] = {"pass_rate": sb["pass_rate"] - sa["pass_rate"]}
        for key in ("mean", "p50", "p95"):
            va, vb = sa["latency_ms"].get(key), sb["latency_ms"].get(key)
            out[f"latency_{key}_ms"] = vb - va if va is not None and vb is not None else None
        ta, tb = sa["tokens"].get("mean_completion"), sb["tokens"].get("mean_completion")
        out["mean_completion_tokens"] = tb - ta if ta is not None and tb is not None else None
        out["completion_tokens_total"] = sb["tokens"]["completion"] - sa["tokens"]["completion"]
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "a": {
                "run_id": self.a.run_id,
                "version": self.a.version,
                "suite": self.a.suite,
                "pass_rate": self.a.pass_rate,
            },
            "b": {
                "run_id": self.b.run_id,
                "version": self.b.version,
                "suite": self.b.suite,
                "pass_rate": self.b.pass_rate,
            },
            "paired_cases": self.paired,
            "only_in_a": list(self.only_in_a),
            "only_in_b": list(self.only_in_b),
            "mcnemar": {
                "regressed": self.test.only_a,
                "improved": self.test.only_b,
                "discordant": self.test.discordant,
                "p_value": self.test.p_value,
                "significant": self.significant,
                "alpha": self.alpha,
            },
            "verdict": self.verdict(),
            "flipped": [{"case_id": c, "a": pa, "b": pb} for c, pa, pb in self.flipped],
            "assertions": [{"name": n, "a": ra, "b": rb} for n, ra, rb in self.assertions],
            "deltas": self.deltas(),
        }


def compare_runs(a: RunRecord, b: RunRecord, alpha: float = 0.05) -> Comparison:
    outcomes_a, outcomes_b = a.outcomes(), b.outcomes()
    common = [c.case_id for c in a.cases if c.case_id in outcomes_b]
    flipped = tuple(
        (case, outcomes_a[case], outcomes_b[case]) for case in common if outcomes_a[case] != outcomes_b[case]
    )
    rates_a, rates_b = a.summary["assertions"], b.summary["assertions"]
    names = list(rates_a) + [n for n in rates_b if n not in rates_a]
    assertions = tuple(
        (n, rates_a[n]["pass_rate"] if n in rates_a else None, rates_b[n]["pass_rate"] if n in rates_b else None)
        for n in names
    )
    return Comparison(
        a=a,
        b=b,
        test=paired_outcomes(outcomes_a, outcomes_b),
        paired=len(common),
        only_in_a=tuple(c for c in outcomes_a if c not in outcomes_b),
        only_in_b=tuple(c for c in outcomes_b if c not in outcomes_a),
        flipped=flipped,
        assertions=assertions,
        alpha=alpha,
    )
