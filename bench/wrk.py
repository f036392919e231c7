"""Closed-loop saturation with ``wrk`` (C, epoll): the load generator that costs the least CPU per request.

A Lua script makes every request a POST with a JSON body and, when the run is done, prints one JSON line with the
totals, error counts and latency percentiles, so nothing has to be scraped from wrk's human-readable output.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

_SCRIPT = """
wrk.method = "POST"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
{headers}

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {{"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,"status":%d,' ..
    '"timeout":%d,"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d,"mean":%.3f}}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.max, latency.mean))
end
"""


def _lua_string(text: str) -> str:
    return "[==[" + text + "]==]"


@dataclass(frozen=True)
class WrkResult:
    requests: int
    duration_s: float
    errors: int  # connect/read/write/timeout errors plus non-2xx answers
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    mean_ms: float

    @property
    def rps(self) -> float:
        """Successful requests per second."""
        return max(0, self.requests - self.errors) / self.duration_s if self.duration_s else 0.0


def run_wrk(
    url: str,
    body: bytes,
    connections: int,
    duration_s: float,
    threads: int = 1,
    timeout_s: float = 10.0,
    prefix: list[str] | None = None,
    headers: dict[str, str] | None = None,
) -> WrkResult:
    """Run wrk against ``url`` (``prefix`` is e.g. a ``taskset`` command to pin it)."""
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "post.lua"
        extra = "\n".join(f"wrk.headers[ {_lua_string(k)} ] = {_lua_string(v)}" for k, v in (headers or {}).items())
        script.write_text(_SCRIPT.format(body=_lua_string(body.decode()), headers=extra))
        command = [
            *(prefix or []),
            "wrk",
            f"-t{min(threads, connections)}",
            f"-c{connections}",
            f"-d{max(1, round(duration_s))}s",
            f"--timeout={max(1, round(timeout_s))}s",
            "-s",
            str(script),
            url,
        ]
        completed = subprocess.run(command, capture_output=True, text=True, timeout=duration_s + timeout_s + 30)
    for line in completed.stdout.splitlines():
        if line.startswith("WRKJSON "):
            data = json.loads(line[len("WRKJSON ") :])
            break
    else:
        raise RuntimeError(
            f"wrk printed no result (exit {completed.returncode}): {completed.stderr or completed.stdout}"
        )
    errors = data["connect"] + data["read"] + data["write"] + data["timeout"] + data["status"]
    return WrkResult(
        requests=data["requests"],
        duration_s=data["duration_us"] / 1e6,
        errors=errors,
        p50_ms=data["p50"] / 1000,
        p90_ms=data["p90"] / 1000,
        p99_ms=data["p99"] / 1000,
        p999_ms=data["p999"] / 1000,
        max_ms=data["max"] / 1000,
        mean_ms=data["mean"] / 1000,
    )
