"""Where the console's live charts come from: Prometheus (every replica) when ``--prometheus-url`` is set, else
this replica's own recent history kept in memory (``observability/history.py``).

Both answer the same document — one time axis and, per chart, each series' values on it — so the page draws
them the same way and only says which it is looking at. A Prometheus that cannot be reached is said in words on
the page (the charts stay empty), never a failed page.
"""

from __future__ import annotations

import math
import time
from typing import Any, Protocol

import aiohttp

from modelyard.observability.history import CHARTS, MetricsHistory, chart_data

_WINDOW_S = 3600.0
_RATE = "[1m]"
_BY = "route, version"


class ChartSource(Protocol):
    kind: str  # "prometheus" | "memory"

    def describe(self) -> str: ...

    async def data(self, since: float | None) -> dict[str, Any]: ...


class MemoryCharts:
    kind = "memory"

    def __init__(self, history: MetricsHistory) -> None:
        self._history = history

    def describe(self) -> str:
        minutes = round(self._history.window_s / 60)
        return (
            f"This replica only: its own metrics over the last {minutes} min, kept in memory and sampled every "
            f"{self._history.interval_s:g} s (set --prometheus-url to see every replica)."
        )

    async def data(self, since: float | None) -> dict[str, Any]:
        return {"source": self.kind, "interval_s": self._history.interval_s, **chart_data(self._history.points())}


def _queries() -> dict[str, list[tuple[str, str]]]:
    """Per chart: (series name template, PromQL). ``{route}``, ``{version}``, ``{error_type}`` come from labels."""

    def quantiles(metric: str) -> list[tuple[str, str]]:
        return [
            (
                f"p{round(q * 100)} {{route}} v{{version}}",
                f"histogram_quantile({q}, sum by (le, {_BY}) (rate({metric}_bucket{_RATE})))",
            )
            for q in (0.5, 0.95)
        ]

    return {
        "requests": [("{route} v{version}", f"sum by ({_BY}) (rate(modelyard_requests_total{_RATE}))")],
        "errors": [("{error_type}", f"sum by (error_type) (rate(modelyard_request_errors_total{_RATE}))")],
        "latency": quantiles("modelyard_request_duration_seconds"),
        "ttft": quantiles("modelyard_time_to_first_token_seconds"),
        "tokens": [
            ("{route} v{version}", f'sum by ({_BY}) (rate(modelyard_token_usage_sum{{token_type="output"}}{_RATE}))')
        ],
        "in_flight": [
            ("gateway", "sum(modelyard_requests_in_flight)"),
            ("engines", "sum(modelyard_engine_requests_in_flight)"),
            ("engine queue", "sum(modelyard_engine_llamacpp_requests_deferred)"),
        ],
    }


class PrometheusCharts:
    kind = "prometheus"

    def __init__(self, url: str, step_s: float = 15.0) -> None:
        self._url = url.rstrip("/")
        self._step_s = step_s

    def describe(self) -> str:
        return f"Every replica, from Prometheus at {self._url} (last 60 min, {self._step_s:g} s steps)."

    async def data(self, since: float | None) -> dict[str, Any]:
        end = math.floor(time.time() / self._step_s) * self._step_s
        start = end - _WINDOW_S
        times = [start + i * self._step_s for i in range(int(_WINDOW_S / self._step_s) + 1)]
        charts: dict[str, dict[str, list[float | None]]] = {chart: {} for chart in CHARTS}
        timeout = aiohttp.ClientTimeout(total=5)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session:
                for chart, queries in _queries().items():
                    for template, expr in queries:
                        for labels, values in await self._range(session, expr, start, end):
                            name = template.format_map(_Labels(labels))
                            charts[chart][name] = [values.get(t) for t in times]
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            return {"source": self.kind, "t": times, "charts": charts, "error": f"Prometheus at {self._url}: {exc}"}
        return {"source": self.kind, "interval_s": self._step_s, "t": times, "charts": charts}

    async def _range(
        self, session: aiohttp.ClientSession, expr: str, start: float, end: float
    ) -> list[tuple[dict[str, str], dict[float, float | None]]]:
        params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{self._step_s:g}"}
        async with session.get(f"{self._url}/api/v1/query_range", params=params) as answer:
            body = await answer.json(content_type=None)
        if body.get("status") != "success":
            raise ValueError(body.get("error") or f"query failed: {expr}")
        out = []
        for result in body["data"]["result"]:
            values = {float(t): _finite(v) for t, v in result["values"]}
            out.append((result.get("metric", {}), values))
        return out


class _Labels(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return ""


def _finite(text: str) -> float | None:
    value = float(text)
    return value if math.isfinite(value) else None
