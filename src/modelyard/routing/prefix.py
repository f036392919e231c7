"""Prefix-cache-aware balancing: send a request to the replica most likely to hold the longest prefix of its prompt
in its KV / prompt cache, unless that replica is already carrying more than its share of the load.

Why: an engine that has just served turn *n* of a conversation still holds that conversation's tokens (llama-server
in its slot and in its RAM prompt cache, vLLM in its prefix-cached KV blocks). Turn *n + 1* repeats all of them, so
on that replica only the new tokens are prefilled; on any other replica the whole context is computed again. For
multi-turn chat over long shared system prompts that prefill is most of the time to first token.

How: the prompt is cut into fixed-size blocks of text and each block is named by a hash *chained* over every block
before it, so a block's name stands for the whole prefix up to its end (the scheme vLLM uses for its KV blocks). A
:class:`PrefixIndex` per target remembers, for recently routed block names, which replicas were sent a prompt
containing them — what the router itself sent, not what the engines report, so it works for any OpenAI-compatible
engine without reading its internals. The depth of a replica is how many leading blocks of the new prompt it has
seen. :func:`pick_by_prefix` takes the deepest replica whose load is within the bounded-load cap (as in consistent
hashing with bounded loads: no replica above ``load_factor`` times the mean load), ties to the least loaded; when
every deep replica is over the cap it takes the best of the others, which is what a saturated conversation must do.

The index is bounded (oldest block names are forgotten first, as engines evict their oldest cache entries) and
lives on the target's state, so a new catalog starts it afresh; Python's ``hash`` is enough because the names never
leave the process.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

BLOCK_CHARS = 256  # ~64 tokens of English text: fine enough to see a turn's growth, coarse enough to be cheap
MAX_BLOCKS = 256  # prompts longer than this many blocks are named by their first 64 KiB of text
INDEX_CAPACITY = 32768  # block names remembered per target (~2 MiB at most)
LOAD_FACTOR = 1.25  # a replica takes a request while it would carry at most 1.25 times the mean in flight


def prompt_text(payload: dict[str, Any]) -> str:
    """The part of a request that becomes the start of the engine's prompt, in order: tools (rendered into the
    system area by chat templates), then each message's role and text (for a completion, the prompt)."""
    messages = payload.get("messages")
    if not isinstance(messages, list):
        prompt = payload.get("prompt")
        return prompt if isinstance(prompt, str) else ""
    parts: list[str] = []
    tools = payload.get("tools")
    if tools:
        parts.append(repr(tools))
    for message in messages:
        if not isinstance(message, dict):
            continue
        parts.append(str(message.get("role")))
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):  # content parts: their text, in order
            parts.extend(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return "\x1e".join(parts)


def prompt_blocks(payload: dict[str, Any], block_chars: int = BLOCK_CHARS) -> tuple[int, ...]:
    """Chained names of the prompt's whole blocks (a trailing partial block is left out: the next turn extends it,
    so its name would never be seen again)."""
    text = prompt_text(payload)
    end = min(len(text) // block_chars, MAX_BLOCKS) * block_chars
    names: list[int] = []
    previous = 0
    for start in range(0, end, block_chars):
        previous = hash((previous, text[start : start + block_chars]))
        names.append(previous)
    return tuple(names)


class PrefixIndex:
    """Block name → bit mask of the replicas (by index in the target) that were sent a prompt containing it.

    Bounded: past ``capacity`` names the least recently routed are forgotten (a dict keeps insertion order; a
    routed name is moved to the end)."""

    __slots__ = ("_capacity", "_seen")

    def __init__(self, capacity: int = INDEX_CAPACITY) -> None:
        self._capacity = capacity
        self._seen: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self._seen)

    def depths(self, blocks: Sequence[int], replicas: int) -> list[int]:
        """For each replica, how many leading blocks of ``blocks`` it has been sent."""
        depths = [0] * replicas
        alive = (1 << replicas) - 1  # replicas still matching every block so far
        seen = self._seen
        for depth, name in enumerate(blocks, 1):
            alive &= seen.get(name, 0)
            if not alive:
                break
            for replica in range(replicas):
                if alive >> replica & 1:
                    depths[replica] = depth
        return depths

    def record(self, blocks: Sequence[int], replica: int) -> None:
        """``replica`` was sent a prompt made of ``blocks``: it now (probably) caches every one of them."""
        seen = self._seen
        bit = 1 << replica
        for name in blocks:
            seen[name] = seen.pop(name, 0) | bit
        excess = len(seen) - self._capacity
        if excess > 0:
            for name in list(_first(seen, excess)):
                del seen[name]


def _first(seen: dict[int, int], count: int) -> list[int]:
    names = []
    for name in seen:
        names.append(name)
        if len(names) == count:
            break
    return names


def load_cap(outstanding: Sequence[int], load_factor: float = LOAD_FACTOR) -> float:
    """Most requests in flight a replica may carry *with* this one: ``load_factor`` times the mean including it
    (bounded loads), but never below the least-loaded replica's count plus one, so that some replica always may.

    No rounding up: with two replicas and one request in flight the cap is 1.25, so the next request goes to the
    idle replica rather than queueing behind the busy one (an engine's compute is per replica)."""
    mean = (sum(outstanding) + 1) / len(outstanding)
    return max(min(outstanding) + 1.0, load_factor * mean)


def pick_by_prefix(
    candidates: Sequence[int],
    outstanding: Sequence[int],
    depths: Sequence[int],
    turn: int,
    load_factor: float = LOAD_FACTOR,
) -> tuple[int, bool]:
    """The replica (an index from ``candidates``) and whether it was chosen for its cache (False: a fallback to
    least-outstanding because no replica within the load cap had seen a block of the prompt).

    ``outstanding`` and ``depths`` are indexed by replica; ``turn`` rotates ties so equal replicas share the load."""
    cap = load_cap([outstanding[i] for i in candidates], load_factor)
    start = turn % len(candidates)
    rotated = [*candidates[start:], *candidates[:start]]
    under = [i for i in rotated if outstanding[i] + 1 <= cap]
    best = max(under, key=lambda i: (depths[i], -outstanding[i]))
    if depths[best] > 0:
        return best, True
    return min(rotated, key=lambda i: outstanding[i]), False
