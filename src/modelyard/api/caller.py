"""Who is acting on an admin call, for the registry's history and the audit log.

With keys, the key is who acts (``key:NAME`` from its grant); a name the caller states in ``x-modelyard-actor``
is kept beside it (``key:ci as alice``). With auth off, the stated name, else the client's address.
"""

from __future__ import annotations

from modelyard.asgi import Request
from modelyard.security.keys import KeyGrant


def actor(request: Request) -> str:
    stated_header = request.header(b"x-modelyard-actor")
    grant: KeyGrant | None = request.caller
    if grant is not None:
        stated = stated_header.decode(errors="replace")[:100] if stated_header else None
        return grant.actor if not stated else f"{grant.actor} as {stated}"
    if stated_header:
        return stated_header.decode(errors="replace")[:256]
    return f"admin-api@{request.client_host}"
