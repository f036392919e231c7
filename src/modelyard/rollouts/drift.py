"""Drift watch: each serving version against its own earlier window, with the experiments' statistics.

"The model started feeling different after an update" becomes numbers: for every (route, version) that served
recently, the last ``recent_s`` (24 h by default) is compared with the ``baseline_s`` before it (the week before)
on output length, empty/refusal rate, error rate, live eval score and feedback. A metric has drifted when the
anytime-valid interval of the change excludes zero *and* the change is larger than its tolerance; the watch
publishes ``modelyard_drift_detected{route,version,metric}`` (1/0) and the shipped alert rule
``ModelyardModelDrift`` fires on it, naming the version and the metric.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry, Gauge

from modelyard.rollouts.judgement import ArmData, Guardrail, Plan, compare
from modelyard.rollouts.stats import Comparison, Verdict
from modelyard.rollouts.window import read_arm, served_versions
from modelyard.store.database import Database

log = logging.getLogger("modelyard.rollouts")

DEFAULT_TOLERANCES: Mapping[str, float] = {
    "output_tokens": 4.0,  # tokens per answer
    "empty_rate": 0.02,
    "error_rate": 0.01,
    "eval_score": 0.05,
    "feedback": 0.05,
}


@dataclass(frozen=True)
class DriftSettings:
    recent_s: float = 24 * 3600.0
    baseline_s: float = 7 * 24 * 3600.0
    alpha: float = 0.01
    min_sample: int = 100
    tolerances: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_TOLERANCES))


@dataclass(frozen=True)
class Drift:
    route: str
    version: str
    comparison: Comparison

    @property
    def drifted(self) -> bool:
        c = self.comparison
        return c.verdict in (Verdict.BETTER, Verdict.WORSE) and abs(c.effect) > c.allowed_change


def compare_windows(
    route: str, version: str, baseline: ArmData, recent: ArmData, settings: DriftSettings
) -> list[Drift]:
    """The drift of each metric with enough samples in both windows (pure)."""
    plan = Plan(alpha=settings.alpha, looks=1, min_sample=settings.min_sample, tuning_n=4 * settings.min_sample)
    found = []
    for metric, tolerance in settings.tolerances.items():
        if min(baseline.size(metric), recent.size(metric)) < settings.min_sample:
            continue
        found.append(Drift(route, version, compare(Guardrail(metric, tolerance), baseline, recent, plan, False)))
    return found


def measure(database: Database, settings: DriftSettings, now: datetime | None = None) -> list[Drift]:
    """Every recently serving version's drift (reads the request log)."""
    now = now or datetime.now(UTC)
    split = now - timedelta(seconds=settings.recent_s)
    start = split - timedelta(seconds=settings.baseline_s)
    drifts: list[Drift] = []
    for route, version in served_versions(database, split):
        baseline = read_arm(database, route, version, start, split)
        recent = read_arm(database, route, version, split)
        drifts.extend(compare_windows(route, version, baseline, recent, settings))
    return drifts


class DriftWatch:
    """Measures drift every ``interval_s`` (run under the ``rollouts`` lease) and publishes it as gauges."""

    def __init__(self, database: Database, registry: CollectorRegistry, settings: DriftSettings | None = None) -> None:
        self._database = database
        self.settings = settings or DriftSettings()
        self._detected = Gauge(
            "modelyard_drift_detected",
            "1 when a version's metric changed significantly against the version's own earlier window.",
            ("route", "version", "metric"),
            registry=registry,
        )
        self._effect = Gauge(
            "modelyard_drift_effect",
            "Recent minus baseline value of a version's metric (its own earlier window).",
            ("route", "version", "metric"),
            registry=registry,
        )

    def publish(self, drifts: list[Drift]) -> None:
        for drift in drifts:
            labels = (drift.route, drift.version, drift.comparison.metric)
            self._detected.labels(*labels).set(1.0 if drift.drifted else 0.0)
            self._effect.labels(*labels).set(drift.comparison.effect)
            if drift.drifted:
                log.warning(
                    "drift: %s version %s %s changed %+.4g (%s)",
                    drift.route,
                    drift.version,
                    drift.comparison.metric,
                    drift.comparison.effect,
                    drift.comparison.verdict.value,
                )

    async def run(self, interval_s: float = 300.0) -> None:
        while True:
            try:
                self.publish(await asyncio.to_thread(measure, self._database, self.settings))
            except Exception:
                log.exception("drift watch: a measurement failed")
            await asyncio.sleep(interval_s)
