"""Drift watch over a real SQLite request log: a version whose answers got shorter and more often empty than in
its own earlier window is flagged on those metrics (and not on the ones that did not change)."""

from __future__ import annotations

import random
import time
from pathlib import Path

from prometheus_client import CollectorRegistry

from modelyard.observability.request_log_store import RequestLogStore
from modelyard.observability.request_record import RequestRecord
from modelyard.roles.stores import open_database
from modelyard.rollouts.drift import DriftSettings, DriftWatch, measure


def _rows(store: RequestLogStore, age_s: float, tokens: float, empty: float, n: int, seed: int) -> None:
    rng = random.Random(seed)
    now, clock = time.time(), time.perf_counter()
    records = []
    for i in range(n):
        count = 0 if rng.random() < empty else max(1, round(rng.gauss(tokens, 3)))
        records.append(
            RequestRecord(
                request_id=f"{seed}-{i}", trace_id="0" * 32, endpoint="chat", received=clock,
                received_at=now - age_s - rng.random() * 3600, route="chat", model="m", version="3",
                status=200, finished=clock + 0.5, completion_tokens=count,
            )
        )  # fmt: skip
    store.insert(records)


def test_a_version_that_changed_is_flagged_on_the_metrics_that_changed(tmp_path: Path) -> None:
    database = open_database(f"sqlite:///{tmp_path / 'drift.db'}")
    store = RequestLogStore(database)
    _rows(store, age_s=3 * 24 * 3600, tokens=20, empty=0.01, n=600, seed=1)  # the week before
    _rows(store, age_s=2 * 3600, tokens=12, empty=0.10, n=600, seed=2)  # the last 24 hours
    drifts = {d.comparison.metric: d for d in measure(database, DriftSettings())}
    assert drifts["output_tokens"].drifted and drifts["output_tokens"].comparison.effect < -4
    assert drifts["empty_rate"].drifted and drifts["empty_rate"].comparison.effect > 0.05
    assert not drifts["error_rate"].drifted
    assert "feedback" not in drifts  # no ratings: not judged
    registry = CollectorRegistry()
    DriftWatch(database, registry).publish(list(drifts.values()))
    labels = {"route": "chat", "version": "3", "metric": "empty_rate"}
    assert registry.get_sample_value("modelyard_drift_detected", labels) == 1.0
    assert registry.get_sample_value("modelyard_drift_detected", {**labels, "metric": "error_rate"}) == 0.0
    database.dispose()
