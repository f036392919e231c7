from __future__ import annotations

import random

from modelyard.routing.selection import TargetView, attempt_targets, choose_target, in_region, split_alternates
from modelyard.routing.weights import rendezvous_choice, stable_unit, weighted_choice


def _views(weights: dict[str, float], down: set[str] = frozenset()) -> list[TargetView]:  # type: ignore[assignment]
    return [TargetView(name, weight, name not in down) for name, weight in weights.items()]


def test_weighted_split_is_within_two_points_over_ten_thousand_requests() -> None:
    rng = random.Random(7)
    views = _views({"stable": 90, "canary": 10})
    allowed = [True, True]
    counts = [0, 0]
    for _ in range(10_000):
        counts[choose_target("chat", views, allowed, None, rng.random()) or 0] += 1
    assert abs(counts[1] / 10_000 - 0.10) < 0.02
    assert abs(counts[0] / 10_000 - 0.90) < 0.02


def test_an_unavailable_target_gets_no_share_and_zero_weight_never_serves() -> None:
    rng = random.Random(1)
    views = _views({"stable": 90, "canary": 10, "shadow": 0}, down={"canary"})
    picks = {choose_target("chat", views, [True] * 3, None, rng.random()) for _ in range(2000)}
    assert picks == {0}
    assert weighted_choice([0, 0], 0.5) is None


def test_sticky_keys_always_land_on_the_same_target_in_any_process() -> None:
    views = _views({"a": 50, "b": 50})
    first = [choose_target("chat", views, [True, True], f"user-{i}", random.random()) for i in range(500)]
    again = [choose_target("chat", views, [True, True], f"user-{i}", random.random()) for i in range(500)]
    assert first == again
    assert stable_unit("x", "y") == stable_unit("x", "y")  # blake2b, not the per-process hash()
    assert 200 < first.count(0) < 300  # and keys spread by weight


def test_changing_weights_moves_only_the_keys_it_has_to() -> None:
    keys = [f"user-{i}" for i in range(20_000)]
    before = [rendezvous_choice(k, ["a", "b"], [90, 10]) for k in keys]
    after = [rendezvous_choice(k, ["a", "b"], [80, 20]) for k in keys]
    moved = sum(1 for x, y in zip(before, after, strict=True) if x != y)
    assert all(x == 0 and y == 1 for x, y in zip(before, after, strict=True) if x != y)  # only a → b
    assert abs(moved / len(keys) - 0.10) < 0.02  # the minimum: 10 % of keys change target


def test_a_sticky_key_moves_only_while_its_target_is_down() -> None:
    up = _views({"a": 50, "b": 50})
    keys = [f"k{i}" for i in range(400)]
    on_b = [k for k in keys if choose_target("r", up, [True, True], k, 0.0) == 1]
    down = _views({"a": 50, "b": 50}, down={"b"})
    assert all(choose_target("r", down, [True, True], k, 0.0) == 0 for k in on_b)
    on_a = [k for k in keys if k not in on_b]
    assert all(choose_target("r", down, [True, True], k, 0.0) == 0 for k in on_a)
    assert all(choose_target("r", up, [True, True], k, 0.0) == 1 for k in on_b)  # back once it is up


def test_regions_and_fallback_order() -> None:
    views = [TargetView("eu", 1, True, "eu"), TargetView("us", 1, True, "us"), TargetView("any", 1, True)]
    assert in_region(views, None) == [True, True, True]
    assert in_region(views, "eu") == [True, False, True]
    assert attempt_targets(0, [2, 1, 0], [True, False, True]) == [0, 2]
    assert attempt_targets(1, [], [True] * 3) == [1]


def test_a_splits_alternates_are_its_other_weighted_allowed_targets_heaviest_first() -> None:
    views = [
        TargetView("stable", 90, True),
        TargetView("candidate", 10, True),
        TargetView("fallback-only", 0, True),
        TargetView("elsewhere", 50, True, "us"),
        TargetView("big", 30, True),
    ]
    allowed = [True, True, True, False, True]
    assert split_alternates([1], views, allowed) == (0, 4)  # not the weight-0 one, nor the one out of region
    assert split_alternates([1, 0], views, allowed) == (4,)  # a fallback already in the order is not repeated
    assert split_alternates([0], [TargetView("only", 1, True)], [True]) == ()
