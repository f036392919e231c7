from __future__ import annotations

from typing import Any

from modelyard.routing.balancing import ReplicaView, pick_replica
from modelyard.routing.prefix import (
    BLOCK_CHARS,
    PrefixIndex,
    load_cap,
    pick_by_prefix,
    prompt_blocks,
    prompt_text,
)

SYSTEM = "You are a careful assistant. " * 40  # ~1 200 characters: several whole blocks


def _chat(*turns: str) -> dict[str, Any]:
    messages = [{"role": "system", "content": SYSTEM}]
    for index, text in enumerate(turns):
        messages.append({"role": "user" if index % 2 == 0 else "assistant", "content": text})
    return {"model": "m", "messages": messages}


def test_blocks_of_a_later_turn_extend_the_earlier_turn() -> None:
    first = prompt_blocks(_chat("Tell me about the sea. " * 20))
    later = prompt_blocks(_chat("Tell me about the sea. " * 20, "The sea is large. " * 30, "And rivers?"))
    assert len(first) >= 5 and len(later) > len(first)
    assert later[: len(first)] == first  # every earlier block name reappears, in order
    other = prompt_blocks(_chat("Tell me about mountains. " * 20))
    shared = next(i for i, (a, b) in enumerate(zip(first, other, strict=False)) if a != b)
    assert 1 <= shared < len(first)  # the system prompt's blocks are shared, the conversation's are not


def test_block_names_are_chained_so_equal_text_at_another_position_differs() -> None:
    block = "x" * BLOCK_CHARS
    names = prompt_blocks({"prompt": block * 3})
    assert len(set(names)) == 3
    assert prompt_blocks({"prompt": block[:-1]}) == ()  # a partial block has no name
    assert prompt_blocks({"prompt": 42}) == () and prompt_blocks({}) == ()


def test_prompt_text_covers_tools_roles_and_content_parts() -> None:
    parts = {"messages": [{"role": "user", "content": [{"type": "text", "text": "hello"}, {"type": "image_url"}]}]}
    assert prompt_text(parts) == "user\x1ehello"
    with_tools = prompt_text({"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function"}]})
    assert with_tools.startswith("[{'type': 'function'}]")
    assert prompt_text({"messages": ["not a message", {"role": "user", "content": "hi"}]}) == "user\x1ehi"


def test_index_depths_follow_what_each_replica_was_sent() -> None:
    index = PrefixIndex()
    conversation = prompt_blocks(_chat("Tell me about the sea. " * 20))
    grown = prompt_blocks(_chat("Tell me about the sea. " * 20, "The sea is large. " * 30, "And rivers?"))
    assert index.depths(grown, 2) == [0, 0]
    index.record(conversation, 1)
    assert index.depths(grown, 2) == [0, len(conversation)]
    other = prompt_blocks(_chat("Tell me about mountains. " * 20))
    index.record(other, 0)
    shared = index.depths(grown, 2)
    assert 1 <= shared[0] < shared[1] == len(conversation)  # replica 0 holds only the system prompt's blocks


def test_index_forgets_the_least_recently_routed_names_first() -> None:
    index = PrefixIndex(capacity=4)
    index.record([1, 2, 3], 0)
    index.record([4], 0)
    index.record([1], 1)  # 1 is touched again: now the newest
    index.record([5, 6], 0)
    assert len(index) == 4
    assert index.depths([2], 2) == [0, 0] and index.depths([3], 2) == [0, 0]  # the oldest were forgotten
    assert index.depths([1], 2) == [1, 1] and index.depths([6], 2) == [1, 0]


def test_load_cap_is_bounded_above_the_mean_but_never_below_the_least_loaded() -> None:
    assert load_cap([0, 0]) == 1  # nothing in flight: one each
    assert load_cap([1, 0]) == 1.25  # the busy replica (1 + 1 > 1.25) must leave this one to the idle one
    assert load_cap([1, 1]) == 2  # 1.25 * 3 / 2 = 1.875 would leave no replica: the least loaded + 1
    assert load_cap([4, 3]) == 5  # 1.25 * 8 / 2
    assert abs(load_cap([3, 0, 0]) - 5 / 3) < 1e-9  # 1.25 * 4 / 3


def test_pick_by_prefix_prefers_depth_then_spills_when_saturated() -> None:
    assert pick_by_prefix([0, 1], [0, 0], [0, 7], 0) == (1, True)
    assert pick_by_prefix([0, 1], [1, 1], [0, 7], 0) == (1, True)  # equally busy: the cache decides
    assert pick_by_prefix([0, 1], [0, 1], [0, 7], 0) == (0, False)  # its replica is busy, the other idle: spill
    assert pick_by_prefix([0, 1], [3, 4], [0, 7], 0) == (1, True)  # 5 <= 1.25 * 8 / 2: within the cap
    assert pick_by_prefix([0, 1], [1, 4], [2, 7], 0) == (0, True)  # over the cap: the next-deepest replica
    assert pick_by_prefix([0, 1], [1, 4], [0, 7], 0) == (0, False)  # no other replica saw a block: least loaded
    # nothing seen anywhere: least outstanding, ties rotated by turn
    assert pick_by_prefix([0, 1], [2, 1], [0, 0], 0) == (1, False)
    assert {pick_by_prefix([0, 1], [0, 0], [0, 0], turn)[0] for turn in range(4)} == {0, 1}
    # equal depth (a shared system prompt): the less loaded replica, which spreads new conversations
    assert pick_by_prefix([0, 1, 2], [2, 1, 1], [3, 3, 3], 0) == (1, True)
    assert pick_by_prefix([0, 2], [0, 0, 0], [0, 9, 1], 0) == (2, True)  # only candidates count


def test_pick_replica_prefix_cache_skips_unusable_replicas() -> None:
    views = [ReplicaView("a", True, 0, None), ReplicaView("b", False, 0, None), ReplicaView("c", True, 0, None)]
    assert pick_replica("prefix_cache", views, 0, depths=[1, 9, 4]) == 2
    assert pick_replica("prefix_cache", views[1:2], 0, depths=[9]) is None
    assert pick_replica("prefix_cache", views, 0) in (0, 2)  # without depths: least outstanding
