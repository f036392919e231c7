"""Rollout metrics (documented in docs/observability.md and docs/experiments.md). Labels are bounded: ``route``
by configuration, ``arm`` is control or candidate, ``action`` one of the controller's few actions, ``metric`` one
of the judge's metric names."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from modelyard.rollouts.controller import Acted
from modelyard.rollouts.judgement import Decision
from modelyard.rollouts.store import Rollout


class RolloutMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self._decisions = Counter(
            "modelyard_rollout_decisions",
            "Rollout decisions taken (advance, promote, rollback, pause, halt, resume, abort).",
            ("route", "action"),
            registry=registry,
        )
        self._share = Gauge(
            "modelyard_rollout_share", "The candidate's share of a route's traffic (percent) at the last look.",
            ("route",), registry=registry,
        )  # fmt: skip
        self._requests = Gauge(
            "modelyard_rollout_arm_requests",
            "Requests each arm served in the current step's window, at the last look.",
            ("route", "arm"),
            registry=registry,
        )
        self._effect = Gauge(
            "modelyard_rollout_effect",
            "Candidate minus control per judged metric at the last look (relative for latency metrics).",
            ("route", "metric"),
            registry=registry,
        )

    def decided(self, acted: Acted) -> None:
        self._decisions.labels(acted.rollout.route, acted.decision.action).inc()
        share = acted.rollout.share if acted.rollout.active else 0
        self._share.labels(acted.rollout.route).set(share)

    def looked(self, rollout: Rollout, decision: Decision) -> None:
        self._share.labels(rollout.route).set(rollout.share)
        for comparison in decision.comparisons:
            self._effect.labels(rollout.route, comparison.metric).set(comparison.effect)
            self._requests.labels(rollout.route, "control").set(comparison.control_n)
            self._requests.labels(rollout.route, "candidate").set(comparison.treatment_n)
        if decision.sample_ratio is not None:
            control, candidate = decision.sample_ratio.counts
            self._requests.labels(rollout.route, "control").set(control)
            self._requests.labels(rollout.route, "candidate").set(candidate)
