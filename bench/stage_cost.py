"""In-process CPU cost of the request path's feature stages, in microseconds: the part of ``bench.cpu_cost`` that a
busy machine cannot blur.

End-to-end CPU per request (``bench.cpu_cost``) includes two socket exchanges and the kernel's scheduling of
three processes, which on a shared machine moves by tens of microseconds between repetitions. The stages a
feature adds are pure CPU on the event loop, so they can be timed alone: each stage runs ``--loops`` times in a
tight loop with the product's own objects, ``--reps`` times; the minimum over repetitions is the cost (what is
left when nothing else interfered), the median is shown beside it.

- ``auth+limits``: ``SecurityLayer.authenticate`` (peppered key lookup in the snapshot, scope) + ``admit`` (model
  allow-list, request limits, the in-memory rpm/tpm limiter, ``x-ratelimit-*`` headers) + ``settle`` (spend, the
  limiter's reconciliation), for one key with rpm/tpm limits.
- ``metrics``: ``GatewayMetrics.observe`` of a finished streamed request.
- ``record hand-off``: ``RecordShipper.offer`` plus the msgpack encoding of the record in a batch of 128 (what the
  gateway spends for request lines and the request log; the writer process's own work is in ``bench.cpu_cost``).
- ``prefix blocks``: ``prefix_cache`` balancing's block names, index lookup and record for a 9 KiB conversation.

    .venv/bin/python -m bench.stage_cost
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson

from bench import report
from bench.gateway_launcher import _security
from bench.overhead import BODY
from modelyard.observability.metrics import GatewayMetrics
from modelyard.observability.record_frames import BatchCodec
from modelyard.observability.record_shipper import RecordShipper, ShipperTargets, ShipperTuning
from modelyard.observability.request_record import RequestRecord
from modelyard.routing.prefix import PrefixIndex, prompt_blocks

KEY = "my-benchbenchbenchbenchbenchbenchbenchbenchben"


async def timed(step: Callable[[], Awaitable[None]] | Callable[[], None], loops: int, reps: int) -> list[float]:
    """Microseconds per call, one value per repetition (a warm-up pass first)."""
    results = []
    for rep in range(reps + 1):
        started = time.process_time()
        for _ in range(loops):
            outcome = step()
            if outcome is not None:
                await outcome  # type: ignore[misc]
        if rep:
            results.append((time.process_time() - started) / loops * 1e6)
    return results


def finished_record() -> RequestRecord:
    now = time.perf_counter()
    return RequestRecord(
        "req-1", "0" * 32, "chat", now, time.time(), "mock-model", "mock-model", "", "mock-model", True,
        status=200, routed=now + 1e-5, dispatched=now + 2e-5, first_token=now + 0.01, last_token=now + 0.2,
        finished=now + 0.2, prompt_tokens=30, completion_tokens=16, attempts=1,
    )  # fmt: skip


async def measure(args: Any) -> dict[str, list[float]]:
    metrics = GatewayMetrics()
    security = _security(KEY, Path(tempfile.mkdtemp()) / "security.db", metrics)
    await security.start("bench")
    payload = orjson.loads(BODY)
    headers = [(b"content-type", b"application/json"), (b"authorization", f"Bearer {KEY}".encode())]

    async def auth() -> None:
        grant = security.authenticate(headers, "inference")
        admission = await security.admit(grant, dict(payload), "mock-model", "mock-model", "req-1")
        await security.settle(admission, 46, 0.0, 200)

    record = finished_record()
    shipper = RecordShipper(ShipperTargets(True, None), metrics, ShipperTuning(capacity=10**9))
    codec = BatchCodec()
    batch = [record] * 128

    def hand_off() -> None:
        shipper.offer(record)
        if shipper.depth() % 128 == 0:
            codec.batch(1, batch)

    conversation = {"messages": [{"role": "system", "content": "You are a helpful assistant. " * 140}]}
    for turn in range(6):
        conversation["messages"].append({"role": "user", "content": f"question {turn} " * 20})
        conversation["messages"].append({"role": "assistant", "content": "answer " * 60})
    index = PrefixIndex()

    def prefix() -> None:
        blocks = prompt_blocks(conversation)
        index.depths(blocks, 2)
        index.record(blocks, 1)

    stages: dict[str, Any] = {
        "auth+limits": auth,
        "metrics": lambda: metrics.observe(record),
        "record hand-off": hand_off,
        "prefix blocks": prefix,
    }
    results = {name: await timed(step, args.loops, args.reps) for name, step in stages.items()}
    await security.stop()
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--loops", type=int, default=20000)
    parser.add_argument("--reps", type=int, default=7)
    args = parser.parse_args(argv)
    results = asyncio.run(measure(args))
    rows = [
        [name, f"{min(values):.2f}", f"{statistics.median(values):.2f}", f"{max(values):.2f}"]
        for name, values in results.items()
    ]
    out = report.console()
    out.print(report.table("Stage CPU per request (µs)", ["stage", "min", "median", "max"], rows))
    summary = {name: {"min_us": min(v), "median_us": statistics.median(v), "all_us": v} for name, v in results.items()}
    path = report.write_json("stage_cost", {"summary": summary, "settings": vars(args)})
    out.print(f"results: {path}")


if __name__ == "__main__":
    main()
