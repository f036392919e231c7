"""One log line per request, in the same two formats as every other log line (``logs.py``).

The lines are formatted and written by the record writer process (``record_writer.py``), not the gateway: going
through ``logging`` for every request cost more than the proxying itself. A batch's lines are encoded into one
buffer (JSON straight from a msgspec struct: a third of the cost of a dict through orjson) and written in chunks
of whole lines no larger than ``PIPE_BUF``, so they never interleave mid-line with the gateway's own log lines
on the shared stderr.
"""

from __future__ import annotations

import logging
import os
import select
import time
from typing import Any

import msgspec

from modelyard.observability.request_record import RequestRecord
from modelyard.observability.request_row import COLUMNS, DURATION_MS, SHADOW_OF

LOGGER = "modelyard.requests"
_NOT_IN_LINE = frozenset(("received_at", "request_body", "response_body", "key_id"))
_SHADOW = ("shadow_of", "outputs_match", "similarity")
_FIELDS = tuple((name, i) for i, name in enumerate(COLUMNS) if name not in _NOT_IN_LINE and name not in _SHADOW)
_SHADOW_FIELDS = tuple((name, i) for i, name in enumerate(COLUMNS) if name in _SHADOW)


def lines_wanted() -> bool:
    """Request lines are INFO records of ``modelyard.requests``: a higher log level turns them off."""
    return logging.getLogger(LOGGER).isEnabledFor(logging.INFO)


class JsonLine(msgspec.Struct, omit_defaults=True):
    """The JSON line's keys in order: the log envelope, then the row's fields (the shadow comparison only on
    shadow copies). Field names must match ``request_log_table`` (checked by a test)."""

    ts: str
    level: str
    logger: str
    msg: str
    request_id: str
    trace_id: str
    endpoint: str
    route: str
    model: str
    version: str
    target: str
    stream: bool
    status: int
    error_type: str | None
    duration_ms: float
    queued_ms: float | None
    ttft_ms: float | None
    tpot_ms: float | None
    prompt_tokens: int
    completion_tokens: int
    attempts: int
    cost_usd: float
    shadow_of: str | None = None
    outputs_match: bool | None = None
    similarity: float | None = None


class RequestLineFormatter:
    """Formats a request's line from its row (``request_row.py``), the numbers the request log stores."""

    def __init__(self, fmt: str = "text") -> None:
        self._json = fmt == "json"
        self._encoder = msgspec.json.Encoder()
        self._second = -1
        self._prefix = ""  # the timestamp up to the second, reused by every line within that second

    def append(self, buffer: bytearray, record: RequestRecord, row: tuple[Any, ...]) -> None:
        """Append the line (with its newline) to ``buffer``."""
        duration_ms = row[DURATION_MS]
        wall = record.received_at + record.duration_s
        message = f"{record.endpoint} {record.route} {record.status} in {duration_ms:.1f} ms"
        if self._json:
            shadow = () if row[SHADOW_OF] is None else row[SHADOW_OF : SHADOW_OF + 3]
            line = JsonLine(self._stamp(wall), "info", LOGGER, message, *row[0:2], *row[3:19], *shadow)
            self._encoder.encode_into(line, buffer, -1)
            buffer += b"\n"
            return
        fields = _FIELDS if row[SHADOW_OF] is None else _FIELDS + _SHADOW_FIELDS
        pairs = " ".join(f"{name}={row[i]}" for name, i in fields if row[i] is not None)
        clock = time.strftime("%H:%M:%S", time.localtime(wall))
        buffer += f"{clock} INFO    {LOGGER}: {message} {pairs}\n".encode()

    def _stamp(self, wall: float) -> str:
        second = int(wall)
        if second != self._second:
            self._second, self._prefix = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._prefix}.{int((wall - second) * 1000):03d}Z"


def write_lines(fd: int, lines: bytes | bytearray) -> None:
    """Write newline-terminated lines in chunks of whole lines no larger than ``PIPE_BUF`` (atomic on a pipe, so
    never split by another process's write); a longer line goes out on its own."""
    view = memoryview(lines)
    start, end = 0, len(lines)
    while start < end:
        stop = start + select.PIPE_BUF
        if stop < end:
            cut = lines.rfind(b"\n", start, stop)
            stop = cut + 1 if cut >= start else lines.find(b"\n", stop) + 1 or end
        else:
            stop = end
        _write_all(fd, view[start:stop])
        start = stop


def _write_all(fd: int, data: memoryview) -> None:
    while data:
        data = data[os.write(fd, data) :]
