"""Input guards as configured: what a route masks before the call, and what it refuses.

Compiled once, with the config: the deny rules' regular expressions (a bad one is a problem
with its key path) and one case-insensitive, whole-word pattern for the keywords. The
detectors and the masking itself are ``policy.guards``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class GuardSettings:
    mask: tuple[str, ...] = ()  # detector kinds: email, phone, card, iban, secret
    restore: bool = False  # put the masked values back into the answer
    deny_regex: tuple[str, ...] = ()
    deny_keywords: tuple[str, ...] = ()
    max_input_tokens: int | None = None
    review_blocked: bool = False  # a refused request also goes to the review queue
    _patterns: tuple[re.Pattern[str], ...] = field(default=(), compare=False, repr=False)
    _keywords: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    def denied(self, text: str) -> str | None:
        """The kind of rule a text breaks (``regex``, ``keyword``), or None. Never the text."""
        if self._keywords is not None and self._keywords.search(text):
            return "keyword"
        for pattern in self._patterns:
            if pattern.search(text):
                return "regex"
        return None


def compile_guards(mask: list[str], restore: bool, deny_regex: list[str],
                   deny_keywords: list[str], max_input_tokens: int | None, where: str,
                   problems: list[str], review_blocked: bool = False) -> GuardSettings:
    patterns = []
    for i, source in enumerate(deny_regex):
        try:
            patterns.append(re.compile(source))
        except re.error as exc:
            problems.append(f"{where}.deny.regex[{i}]: not a valid regular expression: {exc}")
    keywords = None
    if deny_keywords:
        keywords = re.compile(
            r"(?<!\w)(?:" + "|".join(re.escape(k) for k in deny_keywords) + r")(?!\w)",
            re.IGNORECASE)
    return GuardSettings(tuple(dict.fromkeys(mask)), restore, tuple(deny_regex),
                         tuple(deny_keywords), max_input_tokens, review_blocked,
                         tuple(patterns), keywords)
