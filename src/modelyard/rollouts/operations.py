"""What a person does to a rollout, shared by the CLI and the admin API: start one, resume, promote, roll back,
abort. Each checks what it can before changing anything, so a refused request changes nothing."""

from __future__ import annotations

from modelyard.registry.errors import InvalidRequest, NotFound
from modelyard.registry.references import parse_ref
from modelyard.registry.store import RegistryStore
from modelyard.rollouts.controller import Acted, RolloutController
from modelyard.rollouts.plan import RolloutPlan
from modelyard.rollouts.store import Rollout, RolloutConflict, RolloutStore


def start_rollout(
    store: RolloutStore, registry: RegistryStore, route: str, candidate: str, plan: RolloutPlan, actor: str
) -> Rollout:
    """Start moving ``route`` to ``candidate`` (``name:version``) against the version ``plan.alias`` points at."""
    ref = parse_ref(candidate)
    if ref.version is None:
        raise InvalidRequest(f"--candidate must name a version (MODEL:VERSION), not '{candidate}'.", "candidate")
    version = registry.get_version(ref.name, ref.version)  # NotFound names the model or version
    if version.archived_at is not None:
        raise RolloutConflict(f"Version {ref.version} of '{ref.name}' is archived.", "candidate")
    control = registry.get_model(ref.name).alias_map().get(plan.alias)
    if control is None:
        raise NotFound(
            f"'{ref.name}' has no '{plan.alias}' alias: a rollout compares the candidate with what that alias serves.",
            "alias",
        )
    return store.start(route, ref.name, control, ref.version, plan, actor)


def resume(store: RolloutStore, rollout_id: int, actor: str) -> Rollout:
    """A paused rollout runs again at its step, judged from now on."""
    return store.transition(
        rollout_id, "resume", "resumed by a person", {}, actor, state="running", expect=("paused",), new_window=True
    )[0]


def rollback(store: RolloutStore, rollout_id: int, actor: str) -> Rollout:
    return store.transition(rollout_id, "rollback", "rolled back by a person", {}, actor, state="rolled_back")[0]


def abort(store: RolloutStore, rollout_id: int, actor: str) -> Rollout:
    """Stop without a verdict: traffic returns to control and no alias moves."""
    return store.transition(rollout_id, "abort", "aborted by a person", {}, actor, state="aborted")[0]


def promote(controller: RolloutController, store: RolloutStore, rollout_id: int, actor: str) -> Acted:
    """Promote now, still through the eval gates (a refusal pauses the rollout and says why)."""
    rollout = store.get(rollout_id)
    if not rollout.active:
        raise RolloutConflict(f"Rollout {rollout_id} is {rollout.state}; it cannot promote.", "state")
    return controller.promote(rollout, {}, "promoted by a person", actor=actor)
