"""A background process that keeps a set share of one core busy: the control experiment of
``bench.observability_cost``.

The record writer does its work in a process beside the gateway. How much of the throughput the watched gateway
loses is the writer's design, and how much is this machine's answer to *any* extra process using as much CPU?
Running the unwatched gateway next to this burner (same share of a core, same SCHED_BATCH policy as the writer)
answers the second question.

    python -m bench.cpu_burner --share 0.12
"""

from __future__ import annotations

import argparse
import os
import time


def burn(share: float, period_s: float) -> None:
    """Busy for ``share`` of every ``period_s``, asleep for the rest, forever."""
    busy_s, idle_s = period_s * share, period_s * (1 - share)
    total = 0
    while True:
        started = time.perf_counter()
        while time.perf_counter() - started < busy_s:
            total = (total * 31 + 7) % 1_000_003  # arithmetic, and a little memory traffic below
        time.sleep(idle_s)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--share", type=float, required=True, help="share of one core to keep busy, 0..1")
    parser.add_argument("--period-ms", type=float, default=20.0)
    args = parser.parse_args(argv)
    if not 0 < args.share < 1:
        parser.error("--share must be between 0 and 1")
    if hasattr(os, "SCHED_BATCH"):
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))  # as the record writer does
    burn(args.share, args.period_ms / 1000)


if __name__ == "__main__":
    main()
