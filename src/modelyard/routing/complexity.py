"""Small/large routing: a cheap estimate of how hard a prompt is, from features that cost microseconds.

Features, each in [0, 1]:

- ``length``: estimated prompt tokens (characters / 4) over ``long_prompt_tokens``, capped at 1;
- ``code``: code fences, or several lines that look like code (keywords, braces, semicolons);
- ``math``: equations, LaTeX, or maths vocabulary;
- ``reasoning``: multi-step or reasoning cues ("step by step", "explain why", "compare", "prove", numbered asks);
- ``depth``: conversation turns over ``deep_conversation_turns``, capped at 1.

The score is the weighted mean of the features; at or above the threshold the large target answers. Only the
last 8 000 characters of user text are scanned, which keeps a decision well under a millisecond (see
``bench/router_decision.py``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

FEATURES = ("length", "code", "math", "reasoning", "depth")
DEFAULT_WEIGHTS: Mapping[str, float] = MappingProxyType(
    {"length": 1.0, "code": 1.0, "math": 1.0, "reasoning": 1.5, "depth": 0.5}
)
_SCAN_CHARS = 8000

_CODE_FENCE = re.compile(r"```|~~~")
_CODE_LINE = re.compile(
    r"^\s*(def |class |import |from \S+ import|function |const |let |var |public |private |#include|SELECT |"
    r"for \(|if \(|while \(|return |fn |func |package |<\w+[^>]*>)|[;{}]\s*$",
    re.MULTILINE,
)
_MATH = re.compile(
    r"\\(frac|int|sum|sqrt|lim|partial)|\$[^$]+\$|\b\d+\s*[-+*/^=]\s*\d+|\b(integral|derivative|equation|theorem|"
    r"matrix|eigen\w*|probability|prove|proof|solve for|polynomial|logarithm|modulo)\b",
    re.IGNORECASE,
)
_REASONING = re.compile(
    r"\b(step[- ]by[- ]step|explain why|reason(ing)? (about|through)|think (carefully|through)|analy[sz]e|"
    r"compare|trade-?offs?|pros and cons|justify|derive|plan (out|for)|first,? .{0,80}then|design (a|an)|"
    r"evaluate|critique|debug|optimi[sz]e)\b",
    re.IGNORECASE,
)
_NUMBERED_ASK = re.compile(r"^\s*\d+[.)]\s+\S", re.MULTILINE)


@dataclass(frozen=True)
class RouterDecision:
    large: bool
    score: float

    @property
    def choice(self) -> str:
        return "large" if self.large else "small"


@dataclass(frozen=True)
class ComplexityScorer:
    threshold: float = 0.5
    long_prompt_tokens: int = 1500
    deep_conversation_turns: int = 12
    weights: Mapping[str, float] = field(default_factory=lambda: DEFAULT_WEIGHTS)

    @classmethod
    def configured(
        cls, threshold: float, long_prompt_tokens: int, deep_conversation_turns: int, weights: Mapping[str, float]
    ) -> ComplexityScorer:
        merged = MappingProxyType({**DEFAULT_WEIGHTS, **weights})
        return cls(threshold, long_prompt_tokens, deep_conversation_turns, merged)

    def features(self, payload: Mapping[str, Any]) -> dict[str, float]:
        text, chars, turns = _user_text(payload)
        scanned = text[-_SCAN_CHARS:]
        code_lines = len(_CODE_LINE.findall(scanned))
        math_hits = len(_MATH.findall(scanned))
        reasoning_hits = len(_REASONING.findall(scanned)) + (len(_NUMBERED_ASK.findall(scanned)) >= 3)
        return {
            "length": min(1.0, (chars / 4) / self.long_prompt_tokens),
            "code": 1.0 if _CODE_FENCE.search(scanned) else min(1.0, code_lines / 3),
            "math": min(1.0, math_hits / 2),
            "reasoning": min(1.0, reasoning_hits / 2),
            "depth": min(1.0, turns / self.deep_conversation_turns),
        }

    def score(self, features: Mapping[str, float]) -> float:
        total = sum(self.weights.get(f, 0.0) for f in FEATURES)
        if total <= 0:
            return 0.0
        return sum(features[f] * self.weights.get(f, 0.0) for f in FEATURES) / total

    def decide(self, payload: Mapping[str, Any]) -> RouterDecision:
        score = self.score(self.features(payload))
        return RouterDecision(score >= self.threshold, round(score, 4))


def _user_text(payload: Mapping[str, Any]) -> tuple[str, int, int]:
    """(text to scan, total characters of the prompt, conversation turns) for chat or completion payloads."""
    messages = payload.get("messages")
    if isinstance(messages, list):
        parts: list[str] = []
        chars = 0
        for message in messages:
            content = message.get("content") if isinstance(message, dict) else None
            text = _content_text(content)
            chars += len(text)
            if isinstance(message, dict) and message.get("role") in ("user", "system"):
                parts.append(text)
        return "\n".join(parts), chars, len(messages)
    prompt = payload.get("prompt")
    if isinstance(prompt, list):
        text = "\n".join(p for p in prompt if isinstance(p, str))
    else:
        text = prompt if isinstance(prompt, str) else ""
    return text, len(text), 1


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # multi-part content: only the text parts count
        return "\n".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""
