from __future__ import annotations

import orjson

from modelyard.routing.catalog import ModelCatalog
from modelyard.routing.model import Replica, Route, RouteTarget, ServedModel


class StaticUpstream:
    def __init__(self, name: str) -> None:
        self.name = name
        self.ready = True
        self.base_url = "http://127.0.0.1:1"
        self.active_requests = 0
        self.generation = 0
        self.recovering = False

    async def wait_change(self, timeout_s: float) -> None:
        pass

    def retry_after_s(self) -> int:
        return 1

    def unavailable_reason(self) -> str:
        return "stopped"

    def describe(self) -> dict[str, object]:
        return {"name": self.name}


def _route(name: str, version: int) -> Route:
    served = ServedModel("gemma", version=version)
    return Route(name, (RouteTarget(served.key, served, (Replica(served.key, StaticUpstream(served.key)),)),))


def test_every_id_resolves_to_its_version_and_is_listed() -> None:
    v1, v2 = _route("gemma", 1), _route("gemma@canary", 2)
    catalog = ModelCatalog({"gemma": v1, "gemma@production": v1, "gemma:1": v1, "gemma@canary": v2, "gemma:2": v2})
    assert catalog.resolve("gemma") is v1
    assert catalog.resolve("gemma@canary") is v2
    assert catalog.resolve("other") is None
    assert [m["id"] for m in orjson.loads(catalog.list_body)["data"]] == sorted(
        ["gemma", "gemma@production", "gemma:1", "gemma@canary", "gemma:2"]
    )
    assert catalog.routes()["gemma@canary"] == "gemma:2"
    assert {u.name for u in catalog.upstreams()} == {"gemma:1", "gemma:2"}
    assert orjson.loads(catalog.get_body("gemma:2") or b"")["id"] == "gemma:2"
    assert catalog.get_body("gemma:3") is None


def test_unserved_ids_carry_their_reason() -> None:
    catalog = ModelCatalog({}, {"gemma:3": "Version 3 of 'gemma' is archived."})
    assert catalog.resolve("gemma:3") is None
    assert catalog.explain("gemma:3") == "Version 3 of 'gemma' is archived."
    assert catalog.explain("nothing") is None


def test_an_ejected_replica_is_not_usable_until_a_probe_readmits_it() -> None:
    replica = Replica("r1", StaticUpstream("r1"))
    assert replica.usable
    from modelyard.routing.breaker import BreakerPolicy, after_failure, after_probe

    policy = BreakerPolicy(failures=2, cooldown_s=1)
    replica.breaker = after_failure(after_failure(replica.breaker, 0.0, policy), 0.0, policy)
    assert not replica.usable
    replica.breaker = after_probe(replica.breaker, True, 1.0, policy)
    assert replica.usable
