"""Applying a route's guardrails: to the request's text before the engine sees it, and to the answer's text
before the client does — as a whole JSON answer, or event by event on an SSE stream.

The stream filter keeps a small hold-back window: text is released only once no blocked phrase or sensitive match
could still be completing in it. With a window at least as long as the longest blocked phrase, a phrase split over
any number of tokens is caught before its first character reaches the client; a PII match that touches the
window's edge is held until it is complete. Regex patterns longer than the window are only caught where they fit
in it. The delay this adds to each released piece of text is observed as ``modelyard_guardrail_holdback_seconds``.
"""

from __future__ import annotations

import re
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import orjson

from modelyard import sse
from modelyard.errors import guardrail_blocked, output_blocked
from modelyard.security.guardrails.config import Action, BlocklistRule, GuardrailPolicy, PiiRule
from modelyard.security.guardrails.detectors import Finding, find_injection, find_pii, find_secrets, redact

Hit = Callable[[str, str, str], None]  # (direction, guardrail, action)


def _blocklist_findings(text: str, rule: BlocklistRule, compiled: list[re.Pattern[str]]) -> list[Finding]:
    low = text.lower()
    found = []
    for phrase in rule.phrases:
        needle, start = phrase.lower(), 0
        while (i := low.find(needle, start)) >= 0:
            found.append(Finding("blocklist", i, i + len(needle)))
            start = i + 1
    for pattern in compiled:
        found.extend(Finding("blocklist", m.start(), m.end()) for m in pattern.finditer(text) if m.end() > m.start())
    return found


class InputGuard:
    def __init__(self, policy: GuardrailPolicy, hit: Hit) -> None:
        self._policy = policy
        self._hit = hit
        rule = policy.input.blocklist
        self._patterns = [re.compile(p) for p in rule.patterns] if rule else []

    def apply(self, payload: dict[str, Any]) -> bool:
        """Check and redact the prompt text in place; raise a 400 on a block; return whether anything changed."""
        changed = False
        param = "messages" if "messages" in payload else "prompt" if "prompt" in payload else "input"
        for holder, key in _text_slots(payload):
            text = holder[key]
            new = self._text(text, param)
            if new != text:
                holder[key] = new
                changed = True
        return changed

    def _text(self, text: str, param: str) -> str:
        guards = self._policy.input
        checks: list[tuple[str, str, list[Finding]]] = []
        if guards.secrets:
            checks.append(("secrets", guards.secrets.action, find_secrets(text)))
        if guards.pii:
            checks.append(("pii", guards.pii.action, find_pii(text, guards.pii.kinds)))
        if guards.injection:
            checks.append(("prompt_injection", guards.injection.action, find_injection(text)))
        if guards.blocklist:
            checks.append(
                ("blocklist", guards.blocklist.action, _blocklist_findings(text, guards.blocklist, self._patterns))
            )
        redactions: list[Finding] = []
        for name, action, findings in checks:
            if not findings:
                continue
            self._hit("input", name, action)
            if action == "block":
                raise guardrail_blocked(name, {f.kind for f in findings}, param)
            if action == "redact":
                redactions.extend(findings)
        return redact(text, redactions) if redactions else text


def _text_slots(payload: dict[str, Any]) -> list[tuple[Any, Any]]:
    """(container, key) of every prompt string: chat contents and text parts, completion prompts, embedding input."""
    slots: list[tuple[Any, Any]] = []
    messages = payload.get("messages")
    if isinstance(messages, list):
        for message in messages:
            if not isinstance(message, dict):
                continue
            content = message.get("content")
            if isinstance(content, str):
                slots.append((message, "content"))
            elif isinstance(content, list):
                slots.extend((p, "text") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    for field_name in ("prompt", "input"):
        value = payload.get(field_name)
        if isinstance(value, str):
            slots.append((payload, field_name))
        elif isinstance(value, list):
            slots.extend((value, i) for i, v in enumerate(value) if isinstance(v, str))
    return slots


class HoldBack:
    """The text side of the stream filter (pure, apart from the clock used for the delay it adds)."""

    def __init__(self, policy: GuardrailPolicy, hit: Hit, clock: Callable[[], float] = time.perf_counter) -> None:
        out = policy.output
        self._blocklist = out.blocklist
        self._pii: PiiRule | None = out.pii
        self._patterns = [re.compile(p) for p in out.blocklist.patterns] if out.blocklist else []
        longest = max((len(p) for p in out.blocklist.phrases), default=0) if out.blocklist else 0
        self.window = max(out.hold_back_chars, longest)
        self._hit = hit
        self._clock = clock
        self._pending = ""
        self._arrivals: deque[tuple[int, float]] = deque()  # (end offset in pending, arrival time)
        self.blocked: str | None = None
        self.delays: list[float] = []

    def feed(self, text: str) -> str:
        if self.blocked:
            return ""
        self._pending += text
        self._arrivals.append((len(self._pending), self._clock()))
        return self._release(final=False)

    def flush(self) -> str:
        return "" if self.blocked else self._release(final=True)

    def _release(self, final: bool) -> str:
        buf = self._pending
        findings: list[tuple[str, Action, Finding]] = []
        if self._blocklist:
            action = self._blocklist.action
            findings += [("blocklist", action, f) for f in _blocklist_findings(buf, self._blocklist, self._patterns)]
        if self._pii:
            findings += [("pii", self._pii.action, f) for f in find_pii(buf, self._pii.kinds)]
        for name, action, _ in findings:
            if action == "block":
                self._hit("output", name, "block")
                self.blocked = name
                self._pending = ""
                return ""
        cut = len(buf) if final else max(0, len(buf) - self.window)
        if not final:
            for _, _, f in findings:
                if f.end > cut:
                    cut = min(cut, f.start)
        released = [(n, a, f) for n, a, f in findings if f.end <= cut]
        for name, action, _ in released:
            self._hit("output", name, action)
        out = redact(buf[:cut], [f for _, a, f in released if a == "redact"])
        self._pending = buf[cut:]
        if cut:
            self._note_delay(cut)
        return out

    def _note_delay(self, cut: int) -> None:
        now = self._clock()
        first = self._arrivals[0][1]
        self.delays.append(now - first)
        while self._arrivals and self._arrivals[0][0] <= cut:
            self._arrivals.popleft()
        self._arrivals = deque((end - cut, at) for end, at in self._arrivals)


class OutputGuard:
    """One request's output filter: ``json_body`` for whole answers, ``event``/``finish`` for SSE streams."""

    def __init__(self, policy: GuardrailPolicy, hit: Hit, observe_delay: Callable[[float], None]) -> None:
        self._policy = policy
        self._hit = hit
        self._observe_delay = observe_delay
        self._text = HoldBack(policy, hit)
        self._template: dict[str, Any] | None = None
        self._chat = True
        self.blocked = False

    def json_body(self, raw: bytes) -> bytes:
        try:
            payload = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return raw
        changed = False
        for choice in payload.get("choices") or [] if isinstance(payload, dict) else []:
            holder, key = (choice.get("message") or {}, "content") if "message" in choice else (choice, "text")
            text = holder.get(key)
            if not isinstance(text, str):
                continue
            filt = HoldBack(self._policy, self._hit)
            new = filt.feed(text) + filt.flush()
            if filt.blocked:
                self.blocked = True
                raise output_blocked(filt.blocked)
            if new != text:
                holder[key], changed = new, True
        return orjson.dumps(payload) if changed else raw

    def event(self, event: bytes) -> list[bytes]:
        if self.blocked:
            return []
        if not event.startswith(b"data: {"):
            return [*self.finish(), event]  # "data: [DONE]" and comments: release what is held first
        try:
            payload = orjson.loads(event[6:])
        except orjson.JSONDecodeError:
            return [event]
        choices = payload.get("choices") if isinstance(payload, dict) else None
        if not choices or not isinstance(choices[0], dict):
            return [event]  # usage-only chunk
        choice = choices[0]
        self._chat = "delta" in choice
        holder = (choice.get("delta") or {}) if self._chat else choice
        key = "content" if self._chat else "text"
        text = holder.get(key)
        released = self._text.feed(text) if isinstance(text, str) and text else ""
        finishing = choice.get("finish_reason") is not None
        if finishing and not self._text.blocked:
            released += self._text.flush()
        self._observe()
        if self._text.blocked:
            self.blocked = True
            return [self._blocked_event()]
        self._template = payload
        if isinstance(text, str) and text and not released and not finishing:
            return []  # all of it is held back for now
        if isinstance(text, str) or released:
            holder[key] = released
            if self._chat:
                choice["delta"] = holder
        return [b"data: " + orjson.dumps(payload) + b"\n\n"]

    def finish(self) -> list[bytes]:
        """The stream ends (``[DONE]`` or upstream EOF): release what is still held."""
        if self.blocked:
            return []
        rest = self._text.flush()
        self._observe()
        if self._text.blocked:
            self.blocked = True
            return [self._blocked_event()]
        if not rest or self._template is None:
            return []
        payload = orjson.loads(orjson.dumps(self._template))
        choice = payload["choices"][0]
        choice["finish_reason"] = None
        if self._chat:
            choice["delta"] = {"content": rest}
        else:
            choice["text"] = rest
        return [b"data: " + orjson.dumps(payload) + b"\n\n"]

    def _observe(self) -> None:
        for delay in self._text.delays:
            self._observe_delay(delay)
        self._text.delays.clear()

    def _blocked_event(self) -> bytes:
        error = output_blocked(self._text.blocked or "blocklist")
        return sse.error_event(error.message, type_=error.type, code=error.code or "output_blocked")
