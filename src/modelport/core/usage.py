"""Token usage as a provider reports it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


# not frozen: one is made for every request, and a frozen dataclass costs three times
# as much to construct; nothing changes one once made
@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @classmethod
    def from_openai(cls, usage: Any) -> Usage | None:
        """Read an OpenAI ``usage`` object; ``None`` when it is absent or malformed."""
        if not isinstance(usage, dict):
            return None
        prompt = usage.get("prompt_tokens")
        completion = usage.get("completion_tokens", 0)
        # counts: ints (not bools, which are ints too) that are not negative
        if type(prompt) is not int or type(completion) is not int \
                or prompt < 0 or completion < 0:
            return None
        return cls(prompt, completion)
