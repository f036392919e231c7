"""Pure decisions about what to serve: which versions need an engine, and which version each model id reaches.

Kept free of I/O so the rules (production alias, only-version fallback, hold traffic on the old version until the
new one is ready) are unit-tested directly and read in one place.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass, field

from modelyard.registry.adapters import is_adapter, standalone_reason
from modelyard.registry.records import ModelRecord, RegistrySnapshot, VersionRecord
from modelyard.registry.references import PRODUCTION


@dataclass(frozen=True)
class ServingPlan:
    versions: Mapping[str, VersionRecord] = field(default_factory=dict)  # version key → version needing an engine
    routes: Mapping[str, str] = field(default_factory=dict)  # model id clients send → version key
    unrouted: Mapping[str, str] = field(default_factory=dict)  # known id that is not served → why


def serving_plan(snapshot: RegistrySnapshot) -> ServingPlan:
    """A version is served when an alias points at it, or when it is its model's only active version.

    ``name`` reaches ``production`` (or the only active version), ``name@alias`` the alias, and ``name:N`` any
    served version. Archived and alias-less versions are listed in ``unrouted`` with the reason.
    """
    versions: dict[str, VersionRecord] = {}
    routes: dict[str, str] = {}
    unrouted: dict[str, str] = {}
    for model in snapshot.models.values():
        _plan_model(model, versions, routes, unrouted)
    return ServingPlan(versions, routes, unrouted)


def _plan_model(
    model: ModelRecord, versions: dict[str, VersionRecord], routes: dict[str, str], unrouted: dict[str, str]
) -> None:
    served: dict[int, VersionRecord] = {}
    adapters = {v.number: v for v in model.versions if is_adapter(v) and not v.archived}
    for alias, number in model.alias_map().items():
        if number in adapters:
            unrouted[f"{model.name}@{alias}"] = standalone_reason(adapters[number])
            continue
        version = model.version(number)
        if version is not None and not version.archived:
            served[number] = version
            routes[f"{model.name}@{alias}"] = version.key
    active = model.active_versions()
    default = model.production
    if default in adapters:
        unrouted[model.name] = standalone_reason(adapters[default])
        default = None
    elif default is None and len(active) == 1 and active[0].number in adapters:
        unrouted[model.name] = standalone_reason(active[0])
    elif default is None and len(active) == 1:
        default = active[0].number
        served[default] = active[0]
    if default is not None and default in served:
        routes[model.name] = served[default].key
    elif model.name in unrouted:
        pass  # an adapter: said above
    else:
        unrouted[model.name] = (
            f"Model '{model.name}' has {len(active)} active versions and no '{PRODUCTION}' alias: promote one "
            f"(modelyard models promote {model.name} VERSION) or address one as {model.name}:VERSION."
        )
    for version in model.versions:
        if version.number in served:
            routes[version.key] = version.key
            versions[version.key] = version
        elif version.archived:
            unrouted[version.key] = f"Version {version.number} of '{model.name}' is archived."
        elif version.number in adapters:
            unrouted[version.key] = standalone_reason(version)
        else:
            unrouted[version.key] = (
                f"Version {version.number} of '{model.name}' is registered but not deployed: give it an alias "
                f"(modelyard models alias {model.name} staging {version.number}) to serve it."
            )


def choose_routes(plan: ServingPlan, ready: Set[str], previous: Mapping[str, str], hold: bool = True) -> dict[str, str]:
    """Where each id goes now. With ``hold``, an id whose new version is not ready yet keeps its previous,
    still-ready version, so that moving an alias never sends a request to an engine that is still loading."""
    chosen: dict[str, str] = {}
    for route, key in plan.routes.items():
        before = previous.get(route)
        if hold and key not in ready and before is not None and before in ready:
            chosen[route] = before
        else:
            chosen[route] = key
    return chosen
