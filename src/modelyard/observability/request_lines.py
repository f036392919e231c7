"""One log line per request, in the same two formats as every other log line (``logs.py``).

The lines are formatted and written by the record writer process (``record_writer.py``), not the gateway: going
through ``logging`` for every request cost more than the proxying itself. The writer writes whole lines in
chunks of at most ``PIPE_BUF`` bytes, so they never interleave mid-line with the gateway's own log lines on the
shared stderr.
"""

from __future__ import annotations

import logging
import os
import select
import time

import orjson

from modelyard.observability.request_record import RequestRecord

LOGGER = "modelyard.requests"


def lines_wanted() -> bool:
    """Request lines are INFO records of ``modelyard.requests``: a higher log level turns them off."""
    return logging.getLogger(LOGGER).isEnabledFor(logging.INFO)


class RequestLineFormatter:
    def __init__(self, fmt: str = "text") -> None:
        self._json = fmt == "json"

    def format(self, record: RequestRecord) -> bytes:
        wall = record.received_at + record.duration_s
        message = f"{record.endpoint} {record.route} {record.status} in {record.duration_s * 1000:.1f} ms"
        fields = record.log_fields()
        if self._json:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(wall)) + f".{int(wall % 1 * 1000):03d}Z"
            line = {"ts": stamp, "level": "info", "logger": LOGGER, "msg": message, **fields}
            return orjson.dumps(line, option=orjson.OPT_APPEND_NEWLINE)
        pairs = " ".join(f"{key}={value}" for key, value in fields.items() if value is not None)
        return f"{time.strftime('%H:%M:%S', time.localtime(wall))} INFO    {LOGGER}: {message} {pairs}\n".encode()


def write_lines(fd: int, lines: list[bytes]) -> None:
    """Write whole lines in chunks no larger than ``PIPE_BUF`` (atomic on a pipe, so never split by another
    process's write); a longer line goes out on its own."""
    chunk: list[bytes] = []
    size = 0
    for line in lines:
        if chunk and size + len(line) > select.PIPE_BUF:
            _write_all(fd, b"".join(chunk))
            chunk, size = [], 0
        chunk.append(line)
        size += len(line)
    if chunk:
        _write_all(fd, b"".join(chunk))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
