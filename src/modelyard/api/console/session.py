"""Console sessions: a signed, expiring cookie naming the key that logged in, and the CSRF token bound to it.

Nothing of the key reaches the browser: the cookie holds the key's public id, the issue and expiry times and a
random session nonce, signed with HMAC-SHA256 under a key derived from the deployment's key pepper (so every
replica verifies every replica's cookies, and a database dump is not enough to forge one). The cookie is
stateless; what makes it stop is (a) its expiry, (b) the key: each request looks the key id up in the key
snapshot, which every replica refreshes within the key poll interval, so revoking or expiring the key ends its
sessions, and (c) logout, which deletes the cookie and remembers the nonce on this replica until it would have
expired anyway. Pure functions of their inputs and the signing key, plus a bounded in-memory set.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import OrderedDict
from dataclasses import dataclass

COOKIE = "modelyard_console"
_VERSION = "v1"
_MAX_ENDED = 100_000  # logged-out nonces remembered (each until its cookie's expiry)


@dataclass(frozen=True)
class Session:
    key_id: str
    issued_at: float
    expires_at: float
    nonce: str


class SessionSigner:
    def __init__(self, signing_key: bytes, lifetime_s: float) -> None:
        self._key = signing_key
        self.lifetime_s = lifetime_s
        self._ended: OrderedDict[str, float] = OrderedDict()

    def issue(self, key_id: str, now: float) -> tuple[Session, str]:
        """A new session for ``key_id`` and its cookie value."""
        session = Session(key_id, now, now + self.lifetime_s, secrets.token_urlsafe(16))
        payload = f"{_VERSION}.{key_id}.{int(session.issued_at)}.{int(session.expires_at)}.{session.nonce}"
        return session, f"{payload}.{self._sign(payload)}"

    def verify(self, cookie: str, now: float) -> Session | None:
        """The session a cookie value carries, or None when it is forged, malformed, expired or logged out."""
        payload, _, signature = cookie.rpartition(".")
        parts = payload.split(".")
        if len(parts) != 5 or parts[0] != _VERSION or not hmac.compare_digest(signature, self._sign(payload)):
            return None
        _, key_id, issued, expires, nonce = parts
        if not (_digits(issued) and _digits(expires)) or float(expires) <= now or nonce in self._ended:
            return None
        return Session(key_id, float(issued), float(expires), nonce)

    def csrf_token(self, session: Session) -> str:
        """The token every form of this session carries back (a different session cannot produce it)."""
        return self._sign(f"csrf.{session.nonce}")[:32]

    def csrf_ok(self, session: Session, token: str) -> bool:
        return hmac.compare_digest(self.csrf_token(session), token)

    def end(self, session: Session, now: float) -> None:
        """Logout: this nonce is refused from now on (remembered until the cookie would have expired)."""
        while self._ended and (len(self._ended) >= _MAX_ENDED or next(iter(self._ended.values())) <= now):
            self._ended.popitem(last=False)
        self._ended[session.nonce] = session.expires_at

    def _sign(self, payload: str) -> str:
        return hmac.new(self._key, payload.encode(), hashlib.sha256).hexdigest()


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


class LoginThrottle:
    """Failed logins per client address in a sliding minute; past the allowance, logins wait (HTTP 429)."""

    def __init__(self, failures_per_minute: int, window_s: float = 60.0, max_clients: int = 10_000) -> None:
        self._allowed = failures_per_minute
        self._window_s = window_s
        self._max_clients = max_clients
        self._failures: OrderedDict[str, list[float]] = OrderedDict()

    def wait_s(self, client: str, now: float) -> float:
        """Seconds ``client`` must wait before trying again (0: it may try now)."""
        recent = [t for t in self._failures.get(client, []) if t > now - self._window_s]
        if len(recent) < self._allowed:
            return 0.0
        return recent[-self._allowed] + self._window_s - now

    def failed(self, client: str, now: float) -> None:
        recent = [t for t in self._failures.pop(client, []) if t > now - self._window_s]
        self._failures[client] = [*recent, now][-self._allowed :]
        while len(self._failures) > self._max_clients:
            self._failures.popitem(last=False)

    def succeeded(self, client: str) -> None:
        self._failures.pop(client, None)
