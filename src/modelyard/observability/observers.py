"""Everything that happens once a request has finished: metrics, its log line, its request-log row.

The handler calls one function with the finished :class:`RequestRecord`; each observer only reads it, and none
does I/O on the event loop (the log line goes through the logging queue, the row through the request log's
bounded queue).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from modelyard.observability.body_policy import BodyPolicy
from modelyard.observability.metrics import GatewayMetrics
from modelyard.observability.request_lines import RequestLineWriter
from modelyard.observability.request_record import RequestRecord


class RecordSink(Protocol):
    def offer(self, record: RequestRecord) -> None: ...


class RequestObservers:
    def __init__(
        self,
        metrics: GatewayMetrics,
        log_requests: bool = True,
        sink: RecordSink | None = None,
        bodies: BodyPolicy | None = None,
        spans: Callable[[RequestRecord], None] | None = None,
        lines: RequestLineWriter | None = None,
    ) -> None:
        self._spans = spans
        self._metrics = metrics
        self.lines = lines if log_requests and RequestLineWriter.wanted() else None
        self.sink = sink
        self._bodies = bodies if sink is not None and bodies is not None else BodyPolicy()

    def keep_bodies(self, route: str, request_id: str) -> bool:
        """Whether this request's bodies go to the request log (never when there is no request log)."""
        return self._bodies.keep_bodies(route, request_id) if self._bodies.rules else False

    def __call__(self, record: RequestRecord) -> None:
        self._metrics.observe(record)
        if self.lines is not None:
            self.lines.offer(record)
        if self.sink is not None:
            self.sink.offer(record)
        if self._spans is not None:
            self._spans(record)
