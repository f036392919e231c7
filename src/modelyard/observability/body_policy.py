"""Which requests keep their prompt and response bodies in the request log.

Bodies can hold personal data, so none are kept unless a rule says so: ``--request-log-bodies 'ROUTE_GLOB=RATE'``
(e.g. ``'gemma-3-270m@canary=1'`` keeps every canary body, ``'*=0.01'`` one request in a hundred). The first
matching rule wins. Sampling is a pure function of the request id, so a decision can be reproduced.
"""

from __future__ import annotations

import fnmatch
import hashlib
from dataclasses import dataclass

MAX_BODY_BYTES = 64 * 1024  # per body; longer ones are cut and marked, so one huge prompt cannot bloat the log
TRUNCATED = "…[truncated by modelyard]"


class BodyPolicyError(ValueError):
    pass


@dataclass(frozen=True)
class BodyRule:
    pattern: str
    rate: float


class BodyPolicy:
    def __init__(self, rules: tuple[BodyRule, ...] = ()) -> None:
        self.rules = rules
        self._rate_by_route: dict[str, float] = {}

    @classmethod
    def parse(cls, specs: list[str] | tuple[str, ...]) -> BodyPolicy:
        rules = []
        for spec in specs:
            pattern, sep, raw_rate = spec.rpartition("=")
            try:
                rate = float(raw_rate)
            except ValueError:
                rate = -1.0
            if not sep or not pattern or not 0.0 <= rate <= 1.0:
                raise BodyPolicyError(
                    f"request-log body rule {spec!r} must be ROUTE_GLOB=RATE with RATE between 0 and 1, "
                    "e.g. 'gemma-3-270m@canary=1' or '*=0.01'"
                )
            rules.append(BodyRule(pattern, rate))
        return cls(tuple(rules))

    def rate(self, route: str) -> float:
        rate = self._rate_by_route.get(route)
        if rate is None:
            rate = next((r.rate for r in self.rules if fnmatch.fnmatchcase(route, r.pattern)), 0.0)
            if len(self._rate_by_route) < 10_000:  # routes are bounded by the catalog; guard anyway
                self._rate_by_route[route] = rate
        return rate

    def keep_bodies(self, route: str, request_id: str) -> bool:
        rate = self.rate(route)
        if rate <= 0.0:
            return False
        if rate >= 1.0:
            return True
        digest = hashlib.blake2b(request_id.encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2**64 < rate


def clip_body(raw: bytes) -> str:
    text = raw[:MAX_BODY_BYTES].decode("utf-8", errors="replace")
    return text + TRUNCATED if len(raw) > MAX_BODY_BYTES else text
