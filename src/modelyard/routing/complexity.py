"""Small/large routing: a cheap estimate of how hard a prompt is, from features that cost microseconds.

Features, each in [0, 1]:

- ``length``: estimated prompt tokens (characters / 4) over ``long_prompt_tokens``, capped at 1;
- ``code``: code fences, or several lines that look like code (keywords, braces, semicolons);
- ``math``: equations, LaTeX, or maths vocabulary;
- ``reasoning``: multi-step or reasoning cues ("step by step", "explain why", "compare", "prove", numbered asks);
- ``depth``: conversation turns over ``deep_conversation_turns``, capped at 1.

The score is the weighted mean of the features; at or above the threshold the large target answers. Only the
last 2 000 characters of user text (where the ask usually is) are scanned for cues; the whole prompt counts for
length. That keeps a decision well under a millisecond (see ``bench/router_decision.py``).
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
_SCAN_CHARS = 2000

# Substring counts (one C-level pass each) rather than alternations of regexes, which backtrack at every
# position: a decision on an 8 000-character prompt stays in the tens of microseconds.
_CODE_MARKERS = ("def ", "class ", "import ", "function ", "const ", "return ", "#include", "select ", "fn ", "=> ")
_CODE_LINE_ENDS = (";\n", "{\n", "}\n", "):\n")
_MATH_WORDS = (
    "\\frac",
    "\\int",
    "\\sum",
    "\\sqrt",
    "integral",
    "derivative",
    "equation",
    "theorem",
    "matrix",
    "eigen",
    "probability",
    "prove",
    "proof",
    "solve for",
    "polynomial",
    "logarithm",
    "modulo",
)
_ARITHMETIC = re.compile(r"\d\s?[-+*/^=]\s?\d")
_REASONING_CUES = (
    "step by step",
    "step-by-step",
    "explain why",
    "reason about",
    "think through",
    "think carefully",
    "analyze",
    "analyse",
    "compare",
    "trade-off",
    "tradeoff",
    "pros and cons",
    "justify",
    "derive",
    "plan out",
    "design a",
    "evaluate",
    "critique",
    "debug",
    "optimize",
    "optimise",
    "why does",
    "what if",
)
_NUMBERED_ASK = re.compile(r"(?m)^\d+[.)] ")


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
        scanned = text[-_SCAN_CHARS:].lower()
        code_hits = sum(scanned.count(m) for m in _CODE_MARKERS) + sum(scanned.count(e) for e in _CODE_LINE_ENDS)
        math_hits = sum(scanned.count(w) for w in _MATH_WORDS) + len(_ARITHMETIC.findall(scanned))
        reasoning_hits = sum(scanned.count(c) for c in _REASONING_CUES) + (len(_NUMBERED_ASK.findall(scanned)) >= 3)
        return {
            "length": min(1.0, (chars / 4) / self.long_prompt_tokens),
            "code": 1.0 if "```" in scanned or "~~~" in scanned else min(1.0, code_hits / 4),
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
