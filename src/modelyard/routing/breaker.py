"""When to stop sending to a replica that keeps failing, and when to let it back in.

A replica is ejected after ``failures`` consecutive failed calls. An ejected replica gets no traffic until a
probe (its health endpoint, called off the request path) succeeds; the first probe is due after ``cooldown_s``,
and every failed probe doubles the wait up to ``max_cooldown_s``. A successful call or probe resets the count.
The transitions are pure functions of the state, so the policy is tested without clocks or sockets.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BreakerPolicy:
    failures: int = 3
    cooldown_s: float = 5.0
    max_cooldown_s: float = 60.0


@dataclass(frozen=True)
class BreakerState:
    consecutive_failures: int = 0
    ejected: bool = False
    probe_due: float = 0.0  # monotonic time of the next probe while ejected
    cooldown_s: float = 0.0  # the wait that produced probe_due (doubles per failed probe)


CLOSED = BreakerState()


def after_failure(state: BreakerState, now: float, policy: BreakerPolicy) -> BreakerState:
    failures = state.consecutive_failures + 1
    if state.ejected:
        return BreakerState(failures, True, state.probe_due, state.cooldown_s)
    if failures >= policy.failures:
        return BreakerState(failures, True, now + policy.cooldown_s, policy.cooldown_s)
    return BreakerState(failures, False)


def after_success(state: BreakerState) -> BreakerState:
    """A successful call. An ejected replica is only re-admitted by a probe, never by a stray late answer."""
    if state.ejected or state.consecutive_failures == 0:
        return state
    return CLOSED


def after_probe(state: BreakerState, ok: bool, now: float, policy: BreakerPolicy) -> BreakerState:
    if ok:
        return CLOSED
    cooldown = min(policy.max_cooldown_s, max(policy.cooldown_s, state.cooldown_s * 2))
    return BreakerState(state.consecutive_failures, True, now + cooldown, cooldown)


def probe_due(state: BreakerState, now: float) -> bool:
    return state.ejected and now >= state.probe_due
