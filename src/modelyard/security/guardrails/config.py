"""Per-route guardrail (and request-limit) configuration: validated data, keyed by route with a ``*`` default.

A route is the model id the client sends (``gemma-3-270m``, ``gemma-3-270m@canary``) or a glob over it; the most
specific entry wins: exact route, then the model's name, then the first matching glob, then ``*``. Loaded from
``modelyard serve --guardrails FILE`` (YAML or JSON) or set with ``PUT /admin/guardrails`` (stored, audited, and
picked up by every replica through the key snapshot poller; it replaces the file's config while set).

Example::

    routes:
      "*":
        input:
          pii: {action: redact}                 # email, phone, card, iban, national_id, ip
          secrets: {action: block}
          injection: {action: flag}
        output:
          blocklist: {action: block, phrases: ["project aurora"], patterns: ["(?i)internal use only"]}
          pii: {action: redact}
          hold_back_chars: 32
        limits: {max_messages: 64, max_tokens: 1024}
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import msgspec
import yaml

from modelyard.security.request_limits import RouteLimits

Action = Literal["block", "redact", "flag"]
NonNegative = Annotated[int, msgspec.Meta(ge=0)]


class GuardrailConfigError(ValueError):
    pass


PiiKind = Literal["email", "phone", "card", "iban", "national_id", "ip"]  # the kinds in detectors.PII_KINDS


class PiiRule(msgspec.Struct, forbid_unknown_fields=True):
    action: Action = "redact"
    kinds: list[PiiKind] = msgspec.field(default_factory=lambda: list(get_args(PiiKind)))


class SecretsRule(msgspec.Struct, forbid_unknown_fields=True):
    action: Action = "block"


class InjectionRule(msgspec.Struct, forbid_unknown_fields=True):
    action: Literal["block", "flag"] = "block"


class BlocklistRule(msgspec.Struct, forbid_unknown_fields=True):
    action: Action = "block"
    phrases: list[Annotated[str, msgspec.Meta(min_length=1)]] = []
    patterns: list[str] = []


class InputGuards(msgspec.Struct, forbid_unknown_fields=True):
    pii: PiiRule | None = None
    secrets: SecretsRule | None = None
    injection: InjectionRule | None = None
    blocklist: BlocklistRule | None = None


class OutputGuards(msgspec.Struct, forbid_unknown_fields=True):
    blocklist: BlocklistRule | None = None
    pii: PiiRule | None = None
    hold_back_chars: Annotated[int, msgspec.Meta(ge=0, le=4096)] = 32


class Limits(msgspec.Struct, forbid_unknown_fields=True):
    max_messages: NonNegative = 0
    max_tokens: NonNegative = 0


class GuardrailPolicy(msgspec.Struct, forbid_unknown_fields=True):
    input: InputGuards = msgspec.field(default_factory=InputGuards)
    output: OutputGuards = msgspec.field(default_factory=OutputGuards)
    limits: Limits = msgspec.field(default_factory=Limits)

    @property
    def route_limits(self) -> RouteLimits:
        return RouteLimits(self.limits.max_messages, self.limits.max_tokens)

    @property
    def guards_input(self) -> bool:
        i = self.input
        return any((i.pii, i.secrets, i.injection, i.blocklist))

    @property
    def guards_output(self) -> bool:
        return self.output.blocklist is not None or self.output.pii is not None


class GuardrailConfig(msgspec.Struct, forbid_unknown_fields=True):
    routes: dict[str, GuardrailPolicy] = {}

    def policy(self, route: str, model: str) -> GuardrailPolicy | None:
        routes = self.routes
        if route in routes:
            return routes[route]
        if model in routes:
            return routes[model]
        for pattern, policy in routes.items():
            if pattern != "*" and fnmatch.fnmatchcase(route, pattern):
                return policy
        return routes.get("*")

    def to_json(self) -> dict[str, Any]:
        return msgspec.to_builtins(self)


def parse_config(data: Any, source: str) -> GuardrailConfig:
    """Validate; errors name the source and the key (``$.routes['*'].input.pii.action``)."""
    try:
        config = msgspec.convert(data if data is not None else {}, GuardrailConfig)
    except msgspec.ValidationError as exc:
        raise GuardrailConfigError(f"{source}: {exc}") from None
    for route, policy in config.routes.items():
        for where, rule in (("input", policy.input.blocklist), ("output", policy.output.blocklist)):
            for pattern in rule.patterns if rule else []:
                try:
                    re.compile(pattern)
                except re.error as exc:
                    raise GuardrailConfigError(
                        f"{source}: routes[{route!r}].{where}.blocklist.patterns: {pattern!r} is not a regex: {exc}"
                    ) from None
    return config


def load_config(path: Path) -> GuardrailConfig:
    try:
        text = path.read_text()
    except OSError as exc:
        raise GuardrailConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise GuardrailConfigError(f"{path}: not valid YAML/JSON: {exc}") from None
    return parse_config(data, str(path))
