"""Who may call what: a pure function of the key's grant, the endpoint, the model route and the region.

Endpoint → scope: ``/v1/*`` needs ``inference``; ``GET``/``HEAD`` on ``/admin/*`` needs ``read`` (``admin``
includes it); any other method on ``/admin/*`` needs ``admin``. ``/health``, ``/ready`` and ``/openapi.json`` are
public (probes and SDK generators must reach them); ``/metrics`` is public unless ``--metrics-auth`` asks for
``read``. Unknown paths outside ``/admin/`` and ``/v1/`` are left to the router's 404.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from modelyard.security.keys import ADMIN, INFERENCE, READ, KeyGrant

PUBLIC_PATHS = frozenset({"/health", "/ready", "/openapi.json"})


def required_scope(method: str, path: str, metrics_public: bool = True) -> str | None:
    """The scope a request needs, or ``None`` for a public endpoint."""
    if path in PUBLIC_PATHS:
        return None
    if path == "/metrics":
        return None if metrics_public else READ
    if path.startswith("/v1/"):
        return INFERENCE
    if path.startswith("/admin/") or path == "/admin":
        return READ if method in ("GET", "HEAD") else ADMIN
    return None


@dataclass(frozen=True)
class Decision:
    allowed: bool
    status: int = 200
    code: str = ""
    message: str = ""


ALLOW = Decision(True)


def has_scope(grant: KeyGrant, scope: str) -> bool:
    return scope in grant.scopes or (scope == READ and ADMIN in grant.scopes)


def authenticate(grant: KeyGrant | None, presented: bool, now: float) -> Decision:
    if grant is None:
        if not presented:
            return Decision(
                False,
                401,
                "invalid_api_key",
                "You didn't provide an API key. Send it as 'Authorization: Bearer my-…' (or 'x-api-key').",
            )
        return Decision(False, 401, "invalid_api_key", "Incorrect API key provided (unknown or revoked).")
    if grant.revoked:
        return Decision(False, 401, "invalid_api_key", f"API key '{grant.name}' has been revoked.")
    if grant.expires_at is not None and grant.expires_at <= now:
        return Decision(False, 401, "invalid_api_key", f"API key '{grant.name}' has expired.")
    return ALLOW


def authorize_scope(grant: KeyGrant, scope: str) -> Decision:
    if has_scope(grant, scope):
        return ALLOW
    return Decision(
        False,
        403,
        "insufficient_scope",
        f"API key '{grant.name}' lacks the '{scope}' scope needed here (it has: {', '.join(sorted(grant.scopes))}).",
    )


def authorize_route(grant: KeyGrant, route: str, model: str, region: str) -> Decision:
    """Per-key allow-lists: routes/models as globs (``gemma-*``, ``gemma-3-270m@canary``), regions exactly."""
    if grant.models and not any(
        fnmatch.fnmatchcase(route, pattern) or fnmatch.fnmatchcase(model, pattern) for pattern in grant.models
    ):
        return Decision(False, 403, "model_not_allowed", f"API key '{grant.name}' may not use model '{route}'.")
    if grant.regions and region not in grant.regions:
        return Decision(
            False,
            403,
            "region_not_allowed",
            f"API key '{grant.name}' may only be served in regions {', '.join(grant.regions)}; "
            f"this gateway is in '{region or 'unset'}'.",
        )
    return ALLOW
