"""Prices per target and the cost of a request from its usage, in US dollars."""

from __future__ import annotations

from dataclasses import dataclass

from modelport.core.usage import Usage


@dataclass(frozen=True, slots=True)
class Price:
    input_per_mtok: float = 0.0
    output_per_mtok: float = 0.0

    def cost(self, usage: Usage) -> float:
        return (
            usage.prompt_tokens * self.input_per_mtok
            + usage.completion_tokens * self.output_per_mtok
        ) / 1_000_000

    def estimate(self, prompt_tokens: int, completion_tokens: int) -> float:
        return self.cost(Usage(prompt_tokens, completion_tokens))
