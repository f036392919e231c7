"""The rollout controller: looks at each running rollout, judges it, and acts — one process at a time.

It runs only while its gateway holds the ``rollouts`` lease (``store/leases.py``), so with several gateways one
drives the rollouts and another takes over when that one dies. Everything it knows is in the database (the
rollout, its step and when the step began, the request log), so a restarted controller resumes where the last
one was. Each look reads both arms' data for the current step (``window.py``), asks
:func:`modelyard.rollouts.judgement.decide`, and acts on the answer:

* *advance*: the next step's share (every gateway picks it up from the database within a second);
* at the last step, *promote*: move the candidate's alias through the registry's eval gates — a gate that
  refuses pauses the rollout with the gate's reason instead of forcing it;
* *rollback* on a guardrail breach, at once; *pause* when inconclusive at the step's maximum duration or when the
  split is broken (sample-ratio mismatch), for a person to resume, promote, roll back or abort.

Each decision is stored with its numbers, audited, and (optionally) POSTed as JSON to the plan's webhook.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from modelyard.evals.dataset import load_dataset
from modelyard.evals.suite import SuiteError, load_suite
from modelyard.registry.errors import RegistryError
from modelyard.registry.store import RegistryStore
from modelyard.rollouts.judgement import Action, Decision, decide
from modelyard.rollouts.live_eval import LiveScorer
from modelyard.rollouts.store import DecisionRecord, Rollout, RolloutStore
from modelyard.rollouts.window import read_window

log = logging.getLogger("modelyard.rollouts")


@dataclass(frozen=True)
class Acted:
    rollout: Rollout
    decision: DecisionRecord


class RolloutController:
    def __init__(
        self,
        store: RolloutStore,
        registry: RegistryStore,
        actor: str,
        on_decision: Callable[[Acted], None] | None = None,
        on_look: Callable[[Rollout, Decision], None] | None = None,
    ) -> None:
        self._store = store
        self._registry = registry
        self._actor = actor
        self._on_decision = on_decision
        self._on_look = on_look
        self._scorers: dict[str, LiveScorer | None] = {}

    # -- one look -----------------------------------------------------------------------------------------------

    def judge(self, rollout: Rollout, now: datetime | None = None) -> Decision:
        """The decision for ``rollout`` now (pure apart from reading the window)."""
        now = now or datetime.now(UTC)
        plan = rollout.plan
        live = plan.live_eval
        scorer = self._scorer(live.suite) if live is not None else None
        window = read_window(
            self._store.database,
            rollout.route,
            rollout.control_version,
            rollout.candidate_version,
            rollout.step_started_at,
            scorer.passed if scorer is not None else None,
            live.sample if live is not None else 1.0,
        )
        final = (now - rollout.step_started_at).total_seconds() >= plan.step_max_s
        return decide(
            plan.guardrail_list(),
            window.control,
            window.candidate,
            rollout.share / 100.0,
            plan.statistics(),
            final,
        )

    def tick(self, now: datetime | None = None) -> list[Acted]:
        """Look at every running rollout once and act on what the looks say."""
        return self._tick_due({}, 0.0, now)

    def act(self, rollout: Rollout, decision: Decision) -> Acted | None:
        numbers = decision.as_dict()
        if decision.action is Action.WAIT:
            return None
        if decision.action is Action.ROLLBACK:
            return self._record(
                rollout.id, "rollback", "guardrail breached: " + decision.reason, numbers, "rolled_back"
            )
        if decision.action is Action.PAUSE:
            return self._record(rollout.id, "pause", decision.reason, numbers, "paused")
        if decision.action is Action.HALT:
            return self._record(rollout.id, "halt", decision.reason, numbers, "paused")
        following = rollout.step + 1
        if following >= len(rollout.steps) or rollout.steps[following] >= 100:
            return self.promote(rollout, numbers, f"passed at {rollout.share} %: {decision.reason}")
        reason = f"passed at {rollout.share} % ({decision.reason}); now {rollout.steps[following]} %"
        return self._record(rollout.id, "advance", reason, numbers, None, step=following)

    def promote(self, rollout: Rollout, numbers: dict[str, Any], reason: str, actor: str | None = None) -> Acted:
        """Move the candidate's alias through the eval gates; a refusal pauses the rollout with the reason."""
        who = actor or self._actor
        try:
            move = self._registry.move_alias(rollout.model, rollout.plan.alias, rollout.candidate_version, who)
        except RegistryError as exc:
            return self._record(rollout.id, "pause", f"promotion refused: {exc.message}", numbers, "paused", actor=who)
        numbers = {**numbers, "alias_move": move.to_json()}
        text = f"{reason}; {rollout.model}@{rollout.plan.alias} → {rollout.candidate_version}"
        return self._record(rollout.id, "promote", text, numbers, "promoted", actor=who)

    def _record(
        self,
        rollout_id: int,
        action: str,
        reason: str,
        numbers: dict[str, Any],
        state: str | None,
        step: int | None = None,
        actor: str | None = None,
    ) -> Acted:
        rollout, decision = self._store.transition(
            rollout_id, action, reason, numbers, actor or self._actor, state=state, step=step
        )
        log.info("rollout %d (%s): %s — %s", rollout.id, rollout.route, action, reason)
        acted = Acted(rollout, decision)
        if self._on_decision is not None:
            self._on_decision(acted)
        return acted

    def _scorer(self, suite_path: str) -> LiveScorer | None:
        if suite_path not in self._scorers:
            try:
                suite = load_suite(Path(suite_path))
                self._scorers[suite_path] = LiveScorer.of(suite, load_dataset(suite))
            except SuiteError as exc:
                log.error("live eval suite %s cannot be used: %s", suite_path, exc)
                self._scorers[suite_path] = None
        return self._scorers[suite_path]

    # -- the loop (under the lease) -------------------------------------------------------------------------------

    async def run(self, interval_s: float = 1.0) -> None:
        """Look, act, post the decisions to their webhooks; until cancelled (the lease lost or the gateway
        stopping). A rollout's own ``look_s`` spaces its looks; the loop wakes every ``interval_s``."""
        due: dict[int, float] = {}
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            while True:
                loop_time = asyncio.get_running_loop().time()
                try:
                    acted = await asyncio.to_thread(self._tick_due, due, loop_time)
                except Exception:
                    log.exception("rollout controller: a tick failed")
                    acted = []
                for done in acted:
                    if done.rollout.plan.webhook:
                        await post_webhook(session, done)
                await asyncio.sleep(interval_s)

    def _tick_due(self, due: dict[int, float], loop_time: float, now: datetime | None = None) -> list[Acted]:
        acted: list[Acted] = []
        for rollout in self._store.find(active_only=True, limit=1000):
            if rollout.state != "running" or due.get(rollout.id, 0.0) > loop_time:
                continue
            due[rollout.id] = loop_time + rollout.plan.look_s
            try:
                decision = self.judge(rollout, now)
            except Exception:  # one broken rollout must not stop the others
                log.exception("rollout %d: the look failed", rollout.id)
                continue
            if self._on_look is not None:
                self._on_look(rollout, decision)
            done = self.act(rollout, decision)
            if done is not None:
                acted.append(done)
        return acted


def webhook_body(acted: Acted) -> dict[str, Any]:
    return {"rollout": acted.rollout.to_json(), "decision": acted.decision.to_json()}


async def post_webhook(session: aiohttp.ClientSession, acted: Acted) -> None:
    url = acted.rollout.plan.webhook
    assert url is not None
    try:
        async with session.post(url, json=webhook_body(acted)) as answer:
            if answer.status >= 300:
                log.warning("rollout %d: webhook %s answered %d", acted.rollout.id, url, answer.status)
    except (aiohttp.ClientError, TimeoutError) as exc:
        log.warning("rollout %d: webhook %s failed: %s", acted.rollout.id, url, exc)
