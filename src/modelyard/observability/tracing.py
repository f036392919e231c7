"""Trace identity for every request, whether or not spans are exported.

A W3C ``traceparent`` from the caller is continued; otherwise a fresh 128-bit trace id is drawn. The id is
returned in ``x-modelyard-trace-id`` and written in the request's log line, so one slow request can be followed
from the client through the logs (and, with an OTLP endpoint configured, into the tracing backend).
"""

from __future__ import annotations

import os
import re

_TRACEPARENT = re.compile(rb"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")
_INVALID_TRACE_ID = "0" * 32


def trace_id_from(traceparent: bytes | None) -> str:
    if traceparent:
        match = _TRACEPARENT.match(traceparent.strip().lower())
        if match and match.group(1).decode() != _INVALID_TRACE_ID:
            return match.group(1).decode()
    return os.urandom(16).hex()
