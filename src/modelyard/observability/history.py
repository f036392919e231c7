"""This replica's recent history of its own metrics, for the web console's live charts when no Prometheus is set.

Every ``interval_s`` the sampler reads the gateway's metrics registry (the same numbers ``/metrics`` serves),
takes the difference to the previous reading and keeps one :class:`Point` per interval: requests per second and
tokens per second per route and version, errors per second by type, latency and time-to-first-token quantiles
from the histogram buckets that moved in the interval (as Prometheus' ``histogram_quantile`` over a ``rate``
would), and what is in flight. Points live in a deque bounded to the last hour, so memory is bounded by the
number of series, not by traffic. Reading and differencing are pure functions (:func:`read_totals`,
:func:`step`); the sampler runs on the event loop because the gateway's fast metrics are only touched there.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry

Series = tuple[str, str]  # (route, version)


@dataclass(frozen=True)
class Totals:
    """Cumulative values read from the registry at one moment."""

    at: float
    requests: dict[Series, float] = field(default_factory=dict)
    errors: dict[str, float] = field(default_factory=dict)  # error_type → count
    latency: dict[Series, dict[float, float]] = field(default_factory=dict)  # le → cumulative count
    ttft: dict[Series, dict[float, float]] = field(default_factory=dict)
    output_tokens: dict[Series, float] = field(default_factory=dict)
    in_flight: float = 0.0
    engine_in_flight: float = 0.0


@dataclass(frozen=True)
class Point:
    """What happened in one interval (rates per second; quantiles in seconds; None where nothing was seen)."""

    at: float
    requests: dict[str, float]
    errors: dict[str, float]
    latency: dict[str, float | None]  # "p95 route v1" → seconds
    ttft: dict[str, float | None]
    tokens: dict[str, float]
    in_flight: dict[str, float]


def label(series: Series) -> str:
    route, version = series
    return f"{route} v{version}" if version else route


def read_totals(registry: CollectorRegistry, at: float) -> Totals:
    """The cumulative numbers the charts need, summed over endpoints and models per (route, version)."""
    totals = Totals(at)
    in_flight = engine_in_flight = 0.0
    for family in registry.collect():
        for sample in family.samples:
            name, labels, value = sample.name, sample.labels, float(sample.value)
            series = (labels.get("route", ""), labels.get("version", ""))
            if name == "modelyard_requests_total":
                totals.requests[series] = totals.requests.get(series, 0.0) + value
            elif name == "modelyard_request_errors_total":
                kind = labels.get("error_type", "unknown")
                totals.errors[kind] = totals.errors.get(kind, 0.0) + value
            elif name == "modelyard_request_duration_seconds_bucket":
                _add_bucket(totals.latency, series, labels["le"], value)
            elif name == "modelyard_time_to_first_token_seconds_bucket":
                _add_bucket(totals.ttft, series, labels["le"], value)
            elif name == "modelyard_token_usage_sum" and labels.get("token_type") == "output":
                totals.output_tokens[series] = totals.output_tokens.get(series, 0.0) + value
            elif name == "modelyard_requests_in_flight":
                in_flight += value
            elif name == "modelyard_engine_requests_in_flight":
                engine_in_flight += value
    return Totals(
        at,
        totals.requests,
        totals.errors,
        totals.latency,
        totals.ttft,
        totals.output_tokens,
        in_flight,
        engine_in_flight,
    )


def _add_bucket(target: dict[Series, dict[float, float]], series: Series, le: str, value: float) -> None:
    buckets = target.setdefault(series, {})
    bound = math.inf if le == "+Inf" else float(le)
    buckets[bound] = buckets.get(bound, 0.0) + value


def histogram_quantile(q: float, buckets: dict[float, float]) -> float | None:
    """Prometheus' estimate: the bucket holding the q-th observation, linearly interpolated within it (the
    lowest bucket starts at 0; an answer in the +Inf bucket is the highest finite bound). None when empty."""
    bounds = sorted(buckets)
    if not bounds:
        return None
    total = buckets[bounds[-1]]
    if total <= 0:
        return None
    rank = q * total
    previous_bound, previous_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return previous_bound
            if count == previous_count:
                return bound
            return previous_bound + (bound - previous_bound) * (rank - previous_count) / (count - previous_count)
        previous_bound, previous_count = bound, count
    return previous_bound


def _delta_buckets(now: dict[float, float], before: dict[float, float] | None) -> dict[float, float]:
    before = before or {}
    return {bound: max(0.0, count - before.get(bound, 0.0)) for bound, count in now.items()}


def _rates(now: dict[Any, float], before: dict[Any, float], seconds: float) -> dict[Any, float]:
    """Per-second increase of each counter; a counter that went down (a restart) counts from zero."""
    rates = {}
    for key, value in now.items():
        increase = value - before.get(key, 0.0)
        rates[key] = (value if increase < 0 else increase) / seconds
    return rates


def step(before: Totals, now: Totals) -> Point:
    """One interval's point from two readings."""
    seconds = max(now.at - before.at, 1e-9)
    requests = {label(s): r for s, r in _rates(now.requests, before.requests, seconds).items()}
    errors = _rates(now.errors, before.errors, seconds)
    tokens = {label(s): r for s, r in _rates(now.output_tokens, before.output_tokens, seconds).items()}
    latency: dict[str, float | None] = {}
    ttft: dict[str, float | None] = {}
    for target, source, earlier in ((latency, now.latency, before.latency), (ttft, now.ttft, before.ttft)):
        for series, buckets in source.items():
            moved = _delta_buckets(buckets, earlier.get(series))
            for q in (0.5, 0.95):
                target[f"p{round(q * 100)} {label(series)}"] = histogram_quantile(q, moved)
    in_flight = {"gateway": now.in_flight, "engines": now.engine_in_flight}
    return Point(now.at, requests, errors, latency, ttft, tokens, in_flight)


CHARTS = ("requests", "errors", "latency", "ttft", "tokens", "in_flight")


def chart_data(points: Sequence[Point]) -> dict[str, Any]:
    """Columns for the console's charts: one time axis, and per chart each series' values aligned to it (None
    where a series had nothing in that interval)."""
    times = [p.at for p in points]
    charts: dict[str, dict[str, list[float | None]]] = {}
    for chart in CHARTS:
        names: dict[str, None] = {}
        for point in points:
            names.update(dict.fromkeys(getattr(point, chart)))
        charts[chart] = {name: [getattr(point, chart).get(name) for point in points] for name in sorted(names)}
    return {"t": times, "charts": charts}


class MetricsHistory:
    """The sampler and its bounded points (owned by the runtime, started and stopped with it)."""

    def __init__(self, registry: CollectorRegistry, interval_s: float = 5.0, window_s: float = 3600.0) -> None:
        self._registry = registry
        self.interval_s = interval_s
        self.window_s = window_s
        self._points: deque[Point] = deque(maxlen=max(1, math.ceil(window_s / interval_s)))
        self._last: Totals | None = None
        self._task: asyncio.Task[None] | None = None

    def sample(self, at: float | None = None) -> None:
        """Take one reading (the loop calls this every interval; tests call it directly)."""
        totals = read_totals(self._registry, time.time() if at is None else at)
        if self._last is not None:
            self._points.append(step(self._last, totals))
        self._last = totals

    def points(self, since: float | None = None) -> list[Point]:
        return [p for p in self._points if since is None or p.at > since]

    async def start(self) -> None:
        self.sample()
        self._task = asyncio.create_task(self._run(), name="metrics-history")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            self.sample()
