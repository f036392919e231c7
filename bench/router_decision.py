"""How long one small/large routing decision takes (target: well under 1 ms), on prompts from tiny to the
8 000-character scan limit and beyond. Pure CPU, in-process: no gateway, no network.

    .venv/bin/python -m bench.router_decision [--iterations 20000]
"""

from __future__ import annotations

import argparse
import statistics
import time

from modelyard.routing.complexity import ComplexityScorer

_CODE = "```python\ndef f(n):\n    return sum(i * j for i in range(n) for j in range(n))\n```\n"
PROMPTS = {
    "short chat": {"messages": [{"role": "user", "content": "Hi! What's the capital of France?"}]},
    "code + reasoning": {
        "messages": [{"role": "user", "content": "Explain step by step why this is slow, prove it:\n" + _CODE}]
    },
    "long conversation (24 turns)": {
        "messages": [
            {"role": "user" if i % 2 == 0 else "assistant", "content": "Tell me more about that idea. " * 8}
            for i in range(24)
        ]
    },
    "8 000 characters (scan: last 2 000)": {
        "prompt": ("The quick brown fox jumps over the lazy dog. 3 + 4 = 7. " * 150)[:8000]
    },
    "100 000 characters": {"prompt": "word " * 20_000},
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=20_000)
    args = parser.parse_args(argv)
    scorer = ComplexityScorer()
    print(f"{'prompt':32} {'p50 µs':>8} {'p99 µs':>8} {'max µs':>8}  decision")
    for name, payload in PROMPTS.items():
        samples = []
        for _ in range(args.iterations):
            started = time.perf_counter_ns()
            decision = scorer.decide(payload)
            samples.append((time.perf_counter_ns() - started) / 1000)
        samples.sort()
        p50 = statistics.median(samples)
        p99 = samples[int(len(samples) * 0.99) - 1]
        print(f"{name:32} {p50:8.1f} {p99:8.1f} {samples[-1]:8.1f}  {decision.choice} ({decision.score})")


if __name__ == "__main__":
    main()
