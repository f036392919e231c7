"""One treatment-against-control table and one sample-ratio line, shared by the rollout and experiment pages so
that a number reads the same on both (they come from the same ``rollouts/stats.py`` comparison)."""

from __future__ import annotations

from typing import Any

from modelyard.api.console.html import badge, esc, number, table


def comparison_table(caption: str, comparisons: list[dict[str, Any]], empty: str) -> str:
    """Treatment against control per metric: samples, values, effect with its interval, p (or e), verdict."""
    rows = [
        [
            esc(c.get("metric")),
            esc(f"{c.get('control_n')} / {c.get('treatment_n')}"),
            esc(f"{number(c.get('control_value'), 4)} → {number(c.get('treatment_value'), 4)}"),
            esc(f"{number(c.get('effect'), 4)} [{number(c.get('lower'), 4)}, {number(c.get('upper'), 4)}]"),
            esc(number(c.get("p_value"), 4) if c.get("p_value") is not None else number(c.get("e_value"), 3)),
            badge(str(c.get("verdict")), "bad" if c.get("breach") else ""),
        ]
        for c in comparisons
    ]
    headers = ["Metric", "Samples control / treatment", "Control → treatment", "Effect [interval]", "p (or e)"]
    return table(caption, [*headers, "Verdict"], rows, empty=empty)


def sample_ratio(ratio: dict[str, Any]) -> str:
    """The split's chi-square check in words (empty when there is none yet)."""
    if not ratio:
        return ""
    verdict = badge("mismatch", "bad") if ratio.get("mismatch") else badge("ok", "ok")
    return (
        f"<p>Sample ratio: {esc(ratio.get('counts'))} against {esc(ratio.get('expected'))} expected, "
        f"χ² {esc(number(ratio.get('chi_square'), 2))}, p {esc(number(ratio.get('p_value'), 4))} {verdict}</p>"
    )
