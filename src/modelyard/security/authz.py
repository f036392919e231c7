"""Who may call what: pure functions of the key's grant, the scope an endpoint needs, the model route and the
region. Each returns the refusal (an OpenAI-shaped error) or None when the call is allowed.

Which scope each endpoint needs is declared in the endpoint table (``api/endpoints.py``): ``inference`` for
``/v1/*``, ``read`` for reading ``/admin/*`` (``admin`` includes it), ``admin`` for changing anything; probes and
the OpenAPI document are public, ``/metrics`` too unless ``--metrics-auth`` asks for ``read``.
"""

from __future__ import annotations

import fnmatch

from modelyard.errors import (
    APIError,
    insufficient_scope,
    invalid_api_key,
    missing_api_key,
    model_not_allowed,
    region_not_allowed,
)
from modelyard.security.keys import ADMIN, READ, KeyGrant


def has_scope(grant: KeyGrant, scope: str) -> bool:
    return scope in grant.scopes or (scope == READ and ADMIN in grant.scopes)


def authenticate(grant: KeyGrant | None, presented: bool, now: float) -> APIError | None:
    if grant is None:
        if not presented:
            return missing_api_key()
        return invalid_api_key("Incorrect API key provided (unknown or revoked).")
    if grant.revoked:
        return invalid_api_key(f"API key '{grant.name}' has been revoked.")
    if grant.expires_at is not None and grant.expires_at <= now:
        return invalid_api_key(f"API key '{grant.name}' has expired.")
    return None


def authorize_scope(grant: KeyGrant, scope: str) -> APIError | None:
    if has_scope(grant, scope):
        return None
    return insufficient_scope(grant.name, scope, sorted(grant.scopes))


def authorize_route(grant: KeyGrant, route: str, model: str, region: str) -> APIError | None:
    """Per-key allow-lists: routes/models as globs (``gemma-*``, ``gemma-3-270m@canary``), regions exactly."""
    if grant.models and not any(
        fnmatch.fnmatchcase(route, pattern) or fnmatch.fnmatchcase(model, pattern) for pattern in grant.models
    ):
        return model_not_allowed(grant.name, route)
    if grant.regions and region not in grant.regions:
        return region_not_allowed(grant.name, grant.regions, region)
    return None
