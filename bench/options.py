"""Command-line options every scenario shares: run length, repetitions, core pinning, publishing plots."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from bench.report import RESULTS


def common_parser(description: str, duration_s: float, reps: int) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--duration", type=float, default=duration_s, help="seconds per measurement")
    parser.add_argument("--reps", type=int, default=reps, help="repetitions (contenders interleaved in each)")
    parser.add_argument(
        "--pin",
        choices=("none", "split"),
        default="none",
        help="none: all processes share both cores; split: load generator on CPU 0, servers on CPU 1",
    )
    parser.add_argument("--publish", action="store_true", help="also write the plot to docs/bench/")
    return parser


def run_dir(scenario: str) -> Path:
    """Per-run folder for the services' logs (and configs), beside the JSON results."""
    path = RESULTS / "logs" / f"{scenario}-{time.strftime('%Y%m%dT%H%M%S')}"
    path.mkdir(parents=True, exist_ok=True)
    return path
