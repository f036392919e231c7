"""Detectors as pure functions over text: each returns the spans it found, nothing else.

Regexes find candidates; checksums cut the false positives where the format has one (Luhn for payment cards,
ISO 13616 mod-97 for IBANs, the SSA's reserved ranges for US SSNs, octet ranges for IPv4). Everything is
offline and deterministic: no model is loaded.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

PII_KINDS = ("email", "phone", "card", "iban", "national_id", "ip")


@dataclass(frozen=True)
class Finding:
    kind: str
    start: int
    end: int

    def text(self, source: str) -> str:
        return source[self.start : self.end]


def luhn_ok(digits: str) -> bool:
    total, double = 0, False
    for char in reversed(digits):
        d = ord(char) - 48
        if double:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
        double = not double
    return total % 10 == 0


def iban_ok(candidate: str) -> bool:
    iban = candidate.replace(" ", "").upper()
    if not 15 <= len(iban) <= 34 or not iban[:2].isalpha() or not iban[2:4].isdigit():
        return False
    rearranged = iban[4:] + iban[:4]
    number = "".join(str(int(c, 36)) for c in rearranged)
    return int(number) % 97 == 1


_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}")
_PHONE = re.compile(r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{2,4}(?:[ .-]\d{2,4}){1,4}(?![\w-])")
_CARD = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")
_SSN = re.compile(r"(?<!\d)(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?!\d)")
_NINO = re.compile(r"\b(?!BG|GB|NK|KN|TN|NT|ZZ)[A-CEGHJ-PR-TW-Z]{2} ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b")
_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
_IPV6 = re.compile(r"(?<![:\w])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![:\w])")


def _emails(text: str) -> Iterable[Finding]:
    return (Finding("email", m.start(), m.end()) for m in _EMAIL.finditer(text))


def _phones(text: str) -> Iterable[Finding]:
    for m in _PHONE.finditer(text):
        digits = sum(c.isdigit() for c in m.group())
        if 8 <= digits <= 15 and not _IPV4.fullmatch(m.group()):
            yield Finding("phone", m.start(), m.end())


def _cards(text: str) -> Iterable[Finding]:
    for m in _CARD.finditer(text):
        digits = re.sub(r"\D", "", m.group())
        if 13 <= len(digits) <= 19 and luhn_ok(digits):
            yield Finding("card", m.start(), m.end())


def _ibans(text: str) -> Iterable[Finding]:
    return (Finding("iban", m.start(), m.end()) for m in _IBAN.finditer(text) if iban_ok(m.group()))


def _national_ids(text: str) -> Iterable[Finding]:
    for pattern in (_SSN, _NINO):
        yield from (Finding("national_id", m.start(), m.end()) for m in pattern.finditer(text))


def _ips(text: str) -> Iterable[Finding]:
    for pattern in (_IPV4, _IPV6):
        for m in pattern.finditer(text):
            if len(m.group()) < 7:  # "::", "1::2": too short to be an address anyone needs hidden
                continue
            try:
                ipaddress.ip_address(m.group())
            except ValueError:
                continue
            yield Finding("ip", m.start(), m.end())


_PII: dict[str, Callable[[str], Iterable[Finding]]] = {
    "email": _emails,
    "card": _cards,  # before phone: a card number also looks like a long phone number
    "iban": _ibans,
    "national_id": _national_ids,
    "ip": _ips,
    "phone": _phones,
}


def find_pii(text: str, kinds: Iterable[str] = PII_KINDS) -> list[Finding]:
    """Non-overlapping findings in text order (an earlier detector in ``_PII`` wins an overlap)."""
    wanted = set(kinds)
    found: list[Finding] = []
    for kind, detect in _PII.items():
        if kind in wanted:
            found.extend(f for f in detect(text) if not any(_overlap(f, g) for g in found))
    return sorted(found, key=lambda f: f.start)


_SECRETS = [
    ("aws_access_key", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    (
        "private_key",
        re.compile(r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----(?:[\s\S]*?-----END (?:[A-Z]+ )?PRIVATE KEY-----)?"),
    ),
    ("github_token", re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,255}\b")),
    ("slack_token", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}\b")),
    ("openai_key", re.compile(r"\bsk-(?:proj-)?[A-Za-z0-9_-]{20,}\b")),
    ("modelyard_key", re.compile(r"\bmy-[A-Za-z0-9_-]{43}\b")),
    ("google_api_key", re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b")),
    ("jwt", re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")),
    (
        "credential_assignment",
        re.compile(r"(?i)\b(?:api[_-]?key|secret|token|passw(?:or)?d)\b\s*[:=]\s*['\"]?[^\s'\"]{8,}"),
    ),
]


def find_secrets(text: str) -> list[Finding]:
    found: list[Finding] = []
    for kind, pattern in _SECRETS:
        found.extend(
            f
            for f in (Finding(kind, m.start(), m.end()) for m in pattern.finditer(text))
            if not any(_overlap(f, g) for g in found)
        )
    return sorted(found, key=lambda f: f.start)


_INJECTION = [
    re.compile(p, re.IGNORECASE)
    for p in (
        r"\b(?:ignore|disregard|forget|override)\b.{0,40}"
        r"\b(?:previous|prior|above|earlier|all|your|the system)\b.{0,20}"
        r"\b(?:instructions?|prompts?|rules|directions|guidelines)\b",
        r"\b(?:reveal|show|print|repeat|output)\b.{0,30}"
        r"\b(?:system|hidden|initial)\s+(?:prompt|instructions?|message)\b",
        r"\byou are now\b.{0,40}\b(?:DAN|jailbroken|unrestricted|developer mode|without (?:any )?(?:rules|limits))",
        r"\b(?:pretend|act as if)\b.{0,40}\b(?:no|without)\s+(?:rules|restrictions|guidelines|filters)\b",
        r"\bjailbreak(?:ing|ed)?\b",
        r"\bdeveloper mode\b.{0,20}\b(?:enabled|on)\b",
        r"</?(?:system|im_start|im_end)>|<\|(?:im_start|im_end|system)\|>",
    )
]


def find_injection(text: str) -> list[Finding]:
    """Heuristics for the well-known attack phrasings; they raise the bar, they are not a proof of safety."""
    return [Finding("prompt_injection", m.start(), m.end()) for p in _INJECTION for m in p.finditer(text)]


def redact(text: str, findings: Iterable[Finding]) -> str:
    out, last = [], 0
    for f in sorted(findings, key=lambda f: f.start):
        if f.start < last:
            continue
        out.append(text[last : f.start])
        out.append(f"[REDACTED:{f.kind.upper()}]")
        last = f.end
    out.append(text[last:])
    return "".join(out)


def _overlap(a: Finding, b: Finding) -> bool:
    return a.start < b.end and b.start < a.end
