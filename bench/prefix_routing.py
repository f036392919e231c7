"""Prefix-cache-aware routing on real engines: round-robin vs least-outstanding vs prefix_cache balancing.

Two ``llama-server`` replicas of the default model (1 thread each, the product's engine flags) stand behind one
modelyard gateway (``bench/gateway_launcher.py``) that declares three routes over the same two URLs, one per
balancing policy. The workload is multi-turn chat: conversations that share a long system prompt, each turn
repeating the whole history (the engine's own earlier answers included), ``--concurrency`` conversations in flight
at a time. Every request generates exactly ``--max-tokens`` tokens (``ignore_eos``), so tokens/s compares equal work.

Interleaved: the conversations are split into ``--rounds`` rounds; in each round every policy runs its share, in an
order rotated per round, with a system prompt of its own (a fresh nonce heads it), so no policy inherits another's
cache. Per policy and round: TTFT p50 / p90 (from send to the first streamed text) and aggregate tokens/s (all
completion tokens over the round's wall time); the ratios to round-robin are paired by round. The engines' own cache
figures come from each answer: ``usage.prompt_tokens_details.cached_tokens`` (prompt tokens reused from the KV /
prompt cache) and ``timings.prompt_n`` (tokens actually prefilled).

    nice .venv/bin/python -m bench.prefix_routing                       # 24 conversations x 6 turns
    nice .venv/bin/python -m bench.prefix_routing --engine-arg=--cache-ram --engine-arg=0  # no RAM prompt cache
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench import report
from bench.options import run_dir
from bench.procs import PRODUCT_PYTHON, Service, free_port, services
from bench.stats import Spread, percentile, ratio, rotated
from modelyard import paths
from modelyard.engines.llamacpp_build import ensure_engine
from modelyard.engines.llamacpp_server import LlamaServerConfig, builtin_chat_template
from modelyard.registry.default_model import DEFAULT_MODEL, ensure_default_model

POLICIES = ("round_robin", "least_outstanding", "prefix_cache")
TARGETS = {"ttft_p50_vs_round_robin": 0.5, "tokens_vs_round_robin": 1.2}
WORDS = (
    "policy",
    "customer",
    "account",
    "refund",
    "invoice",
    "shipment",
    "warranty",
    "delivery",
    "order",
    "payment",
    "address",
    "support",
    "ticket",
    "product",
    "manual",
    "safety",
    "battery",
    "charger",
    "screen",
    "keyboard",
    "network",
    "router",
    "password",
    "privacy",
    "security",
    "update",
    "schedule",
    "appointment",
    "reminder",
    "calendar",
    "meeting",
    "report",
    "summary",
    "table",
    "figure",
    "chapter",
    "section",
    "example",
    "answer",
)


@dataclass
class Turn:
    policy: str
    round: int
    conversation: int
    turn: int
    ttft_s: float = 0.0
    total_s: float = 0.0
    completion_tokens: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    prefilled_tokens: int = 0  # timings.prompt_n: what the engine had to compute
    error: str = ""


@dataclass
class Batch:
    policy: str
    round: int
    turns: list[Turn] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def ok(self) -> list[Turn]:
        return [t for t in self.turns if not t.error]

    @property
    def tokens_per_s(self) -> float:
        return sum(t.completion_tokens for t in self.ok) / self.wall_s if self.wall_s else 0.0


def system_prompt(nonce: str, chars: int, rng: random.Random) -> str:
    """A long instruction block that every conversation of one batch shares; the nonce comes first, so batches
    share no prefix with each other."""
    text = f"Session {nonce}. You are the support assistant of a large online shop. Follow these rules.\n"
    rule = 1
    while len(text) < chars:
        text += f"Rule {rule}: " + " ".join(rng.choice(WORDS) for _ in range(14)) + ".\n"
        rule += 1
    return text


def question(conversation: int, turn: int, rng: random.Random) -> str:
    words = " ".join(rng.choice(WORDS) for _ in range(40))
    return f"Customer {conversation}, message {turn + 1}: I have a question about my {words}. What should I do?"


async def converse(
    client: httpx.AsyncClient,
    route: str,
    batch: Batch,
    conversation: int,
    system: str,
    args: Any,
    rng: random.Random,
) -> None:
    messages: list[dict[str, str]] = [{"role": "system", "content": system}]
    for turn in range(args.turns):
        messages.append({"role": "user", "content": question(conversation, turn, rng)})
        record = Turn(batch.policy, batch.round, conversation, turn)
        batch.turns.append(record)
        payload = {
            "model": route,
            "messages": messages,
            "max_tokens": args.max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
            "ignore_eos": True,
            "temperature": 0,
        }
        answer = await stream_one(client, payload, record)
        messages.append({"role": "assistant", "content": answer})


async def stream_one(client: httpx.AsyncClient, payload: dict[str, Any], record: Turn) -> str:
    """Send one streamed chat request, timestamp its first text, collect its text and the engine's cache figures."""
    started = time.perf_counter()
    text: list[str] = []
    try:
        async with client.stream("POST", "/v1/chat/completions", json=payload) as response:
            if response.status_code != 200:
                record.error = f"HTTP {response.status_code}: {(await response.aread())[:200]!r}"
                return ""
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                event = json.loads(line[6:])
                for choice in event.get("choices") or []:
                    piece = (choice.get("delta") or {}).get("content")
                    if piece:
                        if not text:
                            record.ttft_s = time.perf_counter() - started
                        text.append(piece)
                usage = event.get("usage")
                if usage:
                    record.completion_tokens = usage.get("completion_tokens", 0)
                    record.prompt_tokens = usage.get("prompt_tokens", 0)
                    record.cached_tokens = (usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
                timings = event.get("timings")
                if timings:
                    record.prefilled_tokens = timings.get("prompt_n", 0)
    except httpx.HTTPError as exc:
        record.error = f"{type(exc).__name__}: {exc}"
    record.total_s = time.perf_counter() - started
    return "".join(text)


async def run_batch(port: int, policy: str, round_: int, conversations: list[int], args: Any) -> Batch:
    batch = Batch(policy, round_)
    rng = random.Random(f"{args.seed}-{round_}")  # the same questions for every policy of a round
    system = system_prompt(f"{args.seed}-{round_}-{policy}", args.system_chars, rng)
    queue = iter(conversations)
    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
    timeout = httpx.Timeout(600.0)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=timeout) as client:

        async def worker() -> None:
            for conversation in queue:
                own = random.Random(f"{args.seed}-{round_}-{conversation}")
                await converse(client, policy, batch, conversation, system, args, own)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
        batch.wall_s = time.perf_counter() - started
    return batch


def start_engines(started: list[Service], logs: Path, args: Any) -> list[str]:
    """``args.replicas`` llama-servers of the default model (``args.threads`` each, default 1); their base URLs."""
    build = ensure_engine(paths.cache_dir())
    model = ensure_default_model(paths.cache_dir())
    urls = []
    for index in range(args.replicas):
        port = free_port()
        config = LlamaServerConfig(
            model_path=model,
            alias=DEFAULT_MODEL.name,
            chat_template_file=builtin_chat_template(DEFAULT_MODEL.chat_template),
            context_size=args.ctx_size,
            parallel=args.parallel,
            threads=getattr(args, "threads", 1),
            extra_args=tuple(args.engine_arg),
        )
        command = config.argv(build.binary("llama-server"), port)
        started.append(Service(f"llama-server-{index}", command, f"http://127.0.0.1:{port}/health", logs))
        urls.append(f"http://127.0.0.1:{port}/v1")
    for service in started:
        service.wait_ready(300)
    return urls


def start_gateway(started: list[Service], logs: Path, urls: list[str]) -> int:
    routes = {
        "routes": {
            policy: {"targets": {"replicas": {"url": urls, "upstream_model": DEFAULT_MODEL.name}}, "balancing": policy}
            for policy in POLICIES
        }
    }
    deployments = logs / "deployments.yaml"
    deployments.write_text(json.dumps(routes, indent=2))
    port = free_port()
    command = [str(PRODUCT_PYTHON), "-m", "bench.gateway_launcher", "--port", str(port)]
    command += ["--deployments", str(deployments)]
    gateway = Service("modelyard", command, f"http://127.0.0.1:{port}/ready", logs)
    started.append(gateway)
    gateway.wait_ready(120)
    return port


def measure(args: Any) -> dict[str, Any]:
    logs = run_dir("prefix_routing")
    per_round = args.conversations // args.rounds
    batches: dict[str, list[Batch]] = {p: [] for p in POLICIES}
    with services() as started:
        urls = start_engines(started, logs, args)
        port = start_gateway(started, logs, urls)
        warm = argparse_namespace(args, turns=1, concurrency=1)
        for engine in started[: len(urls)]:  # model pages in memory on every replica, straight to the engine
            asyncio.run(run_batch(int(engine.ready_url.split(":")[2].split("/")[0]), "warm-up", -1, [0], warm))
        for round_ in range(args.rounds):
            conversations = list(range(round_ * per_round, (round_ + 1) * per_round))
            for policy in rotated(list(POLICIES), round_):
                batch = asyncio.run(run_batch(port, policy, round_, conversations, args))
                batches[policy].append(batch)
                ok = batch.ok
                report.console().print(
                    f"[dim]round {round_ + 1} {policy}: {batch.tokens_per_s:.1f} tokens/s, "
                    f"TTFT p50 {percentile([t.ttft_s * 1000 for t in ok], 50):.0f} ms, "
                    f"cached {sum(t.cached_tokens for t in ok)}/{sum(t.prompt_tokens for t in ok)} prompt tokens, "
                    f"errors {len(batch.turns) - len(ok)}[/]"
                )
    return {"batches": batches}


def argparse_namespace(args: Any, **changes: Any) -> Any:
    copy = type(args)(**vars(args))
    for key, value in changes.items():
        setattr(copy, key, value)
    return copy


def summarize(batches: dict[str, list[Batch]], args: Any) -> dict[str, Any]:
    summary: dict[str, Any] = {"policies": {}}
    base = batches["round_robin"]
    for policy in POLICIES:
        runs = batches[policy]
        ok = [t for b in runs for t in b.ok]
        prompt = sum(t.prompt_tokens for t in ok)
        summary["policies"][policy] = {
            "ttft_p50_ms": Spread.of([percentile([t.ttft_s * 1000 for t in b.ok], 50) for b in runs]),
            "ttft_p90_ms": Spread.of([percentile([t.ttft_s * 1000 for t in b.ok], 90) for b in runs]),
            "tokens_per_s": Spread.of([b.tokens_per_s for b in runs]),
            "ttft_p50_vs_round_robin": Spread.of(
                [
                    ratio(percentile([t.ttft_s for t in b.ok], 50), percentile([t.ttft_s for t in r.ok], 50))
                    for b, r in zip(runs, base, strict=True)
                ]
            ),
            "tokens_vs_round_robin": Spread.of(
                [ratio(b.tokens_per_s, r.tokens_per_s) for b, r in zip(runs, base, strict=True)]
            ),
            "cached_share": ratio(sum(t.cached_tokens for t in ok), prompt),
            "prefilled_per_request": ratio(sum(t.prefilled_tokens for t in ok), len(ok)),
            "prompt_tokens_per_request": ratio(prompt, len(ok)),
            "requests": len(ok),
            "errors": sum(len(b.turns) - len(b.ok) for b in runs),
        }
    prefix = summary["policies"]["prefix_cache"]
    summary["targets"] = [
        {
            "target": "TTFT p50 <= 0.5x round-robin",
            "measured": prefix["ttft_p50_vs_round_robin"].median,
            "met": prefix["ttft_p50_vs_round_robin"].median <= TARGETS["ttft_p50_vs_round_robin"],
        },
        {
            "target": "aggregate tokens/s >= 1.2x round-robin",
            "measured": prefix["tokens_vs_round_robin"].median,
            "met": prefix["tokens_vs_round_robin"].median >= TARGETS["tokens_vs_round_robin"],
        },
    ]
    summary["settings"] = {
        k: getattr(args, k)
        for k in (
            "conversations",
            "turns",
            "rounds",
            "concurrency",
            "system_chars",
            "max_tokens",
            "replicas",
            "parallel",
            "ctx_size",
            "engine_arg",
            "seed",
        )
    }
    return summary


def show(summary: dict[str, Any]) -> None:
    rows = []
    for policy, e in summary["policies"].items():
        rows.append(
            [
                policy,
                e["ttft_p50_ms"].fmt(0),
                e["ttft_p90_ms"].fmt(0),
                e["tokens_per_s"].fmt(1),
                e["ttft_p50_vs_round_robin"].fmt(2, "x"),
                e["tokens_vs_round_robin"].fmt(2, "x"),
                f"{e['cached_share']:.1%}",
                f"{e['prefilled_per_request']:.0f} / {e['prompt_tokens_per_request']:.0f}",
                f"{e['requests']}/{e['errors']}",
            ]
        )
    columns = ["balancing", "TTFT p50 ms", "TTFT p90 ms", "tokens/s", "TTFT vs RR", "tokens/s vs RR"]
    columns += ["cached prompt tokens", "prefilled / prompt per req", "requests/errors"]
    out = report.console()
    out.print(report.table("Prefix routing - 2 llama-server replicas (median (min-max) over rounds)", columns, rows))
    rows = [
        [t["target"], f"{t['measured']:.3f}", "[green]met[/]" if t["met"] else "[red]missed[/]"]
        for t in summary["targets"]
    ]
    out.print(report.table("Targets", ["target", "measured", ""], rows))


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--conversations", type=int, default=24, help="conversations per policy")
    parser.add_argument("--turns", type=int, default=6, help="turns per conversation")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds the conversations are split into")
    parser.add_argument("--concurrency", type=int, default=4, help="conversations in flight at a time")
    parser.add_argument("--system-chars", type=int, default=4000, help="length of the shared system prompt")
    parser.add_argument("--max-tokens", type=int, default=24, help="tokens generated per turn")
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--parallel", type=int, default=2, help="llama-server slots per replica")
    parser.add_argument("--ctx-size", type=int, default=8192, help="llama-server context (shared by its slots)")
    parser.add_argument("--engine-arg", action="append", default=[], help="extra llama-server flag")
    parser.add_argument("--seed", default="prefix")
    args = parser.parse_args(argv)
    raw = measure(args)
    summary = summarize(raw["batches"], args)
    show(summary)
    turns = [vars(t) for batches in raw["batches"].values() for b in batches for t in b.turns]
    path = report.write_json("prefix_routing", {"summary": summary, "turns": turns})
    report.console().print(f"results: {path}")


if __name__ == "__main__":
    main()
