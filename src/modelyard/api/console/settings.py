"""The web console's settings: whether it is served, how long a session lasts, where its charts read from."""

from __future__ import annotations

from dataclasses import dataclass

from modelyard.options import Section, at_least, between, on_off, option, prefixed


@dataclass(frozen=True)
class ConsoleSettings(Section):
    console: bool = option(
        True,
        flag="--console",
        parse=on_off,
        choices=("on", "off"),
        help="Serve the web console at /console (docs/console.md): on, or off.",
    )
    console_session_s: float = option(
        8 * 3600.0,
        flag="--console-session",
        help="Seconds a console login lasts before the key must be entered again.",
        check=between(60, 7 * 86400),
    )
    console_login_failures: int = option(
        5,
        flag="--console-login-failures",
        help="Failed console logins allowed per client address per minute before it must wait.",
        check=at_least(1),
    )
    prometheus_url: str | None = option(
        None,
        flag="--prometheus-url",
        help="Prometheus the console's charts query (every replica); unset: this replica's own last hour, in memory.",
        check=prefixed("http://", "https://"),
    )
