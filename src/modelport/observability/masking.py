"""Masking sensitive values in captured request and response bodies.

Bodies are stored only for routes with ``capture: true``, and only after this pass. In a
JSON body, the value of any key whose name says it holds a secret (``password``,
``api_key``, ``token``, ``authorization``, ...) is replaced whole; in every string, the
configured secrets, bearer tokens, ``sk-``/``mpk_``-style keys, e-mail addresses, card
numbers (checked with Luhn) and phone numbers are replaced by ``[MASKED:<kind>]``. A body
that is not JSON is masked as text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import orjson

_SECRET_KEYS = re.compile(
    r"(pass(word|wd)?|secret|token|api[_-]?key|authorization|credential|private[_-]?key|"
    r"ssn|cvv|cvc)", re.IGNORECASE)
# The detectors, shared with the input guards (``policy.guards``).
KEY = re.compile(r"\b(?:sk|pk|rk|mpk|mpt)[-_][A-Za-z0-9_\-]{12,}")
BEARER = re.compile(r"\bBearer\s+[A-Za-z0-9._~+/\-]{8,}=*", re.IGNORECASE)
EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}")
PHONE = re.compile(r"(?<![\w+])\+?\d[\d ().\-]{8,}\d(?!\w)")
CARD = re.compile(r"(?<!\d)(?:\d[ \-]?){12,18}\d(?!\d)")
_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("key", KEY), ("bearer", BEARER), ("email", EMAIL), ("phone", PHONE))


def luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


class Masker:
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets = sorted((s for s in secrets if len(s) >= 6), key=len, reverse=True)

    def text(self, value: str) -> str:
        for secret in self._secrets:
            if secret in value:
                value = value.replace(secret, "[MASKED:secret]")
        value = CARD.sub(self._card, value)
        for kind, pattern in _PATTERNS:
            value = pattern.sub(f"[MASKED:{kind}]", value)
        return value

    @staticmethod
    def _card(match: re.Match[str]) -> str:
        digits = re.sub(r"\D", "", match.group(0))
        return "[MASKED:card]" if 13 <= len(digits) <= 19 and luhn(digits) else match.group(0)

    def value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.value(v) for v in value]
        if isinstance(value, dict):
            return {k: "[MASKED:field]" if isinstance(k, str) and _SECRET_KEYS.search(k)
                    and isinstance(v, str | int | float) and v != "" else self.value(v)
                    for k, v in value.items()}
        return value

    def body(self, body: bytes | None) -> bytes | None:
        """A body with its sensitive values masked; streams (SSE) line by line."""
        if body is None:
            return None
        try:
            return orjson.dumps(self.value(orjson.loads(body)))
        except orjson.JSONDecodeError:
            pass
        text = body.decode("utf-8", "replace")
        if text.startswith("data:"):
            return "\n".join(self._sse_line(line) for line in text.split("\n")).encode()
        return self.text(text).encode()

    def _sse_line(self, line: str) -> str:
        if not line.startswith("data: {"):
            return line
        try:
            return "data: " + orjson.dumps(self.value(orjson.loads(line[6:]))).decode()
        except orjson.JSONDecodeError:
            return self.text(line)
