"""Usage.from_openai: reading a provider's usage object, tolerating what is absent or wrong."""

from __future__ import annotations

from typing import Any

import pytest

from modelport.core.usage import Usage


def test_from_openai_reads_prompt_and_completion_tokens() -> None:
    usage = Usage.from_openai({"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13})

    assert usage == Usage(prompt_tokens=10, completion_tokens=3)
    assert usage is not None and usage.total_tokens == 13


def test_from_openai_without_completion_tokens_counts_zero_as_for_embeddings() -> None:
    assert Usage.from_openai({"prompt_tokens": 8, "total_tokens": 8}) == Usage(8, 0)


def test_from_openai_ignores_extra_fields() -> None:
    usage = Usage.from_openai(
        {"prompt_tokens": 1, "completion_tokens": 2, "prompt_tokens_details": {"cached": 1}}
    )

    assert usage == Usage(1, 2)


@pytest.mark.parametrize(
    "raw",
    [
        None,
        [],
        "usage",
        {},
        {"completion_tokens": 2},
        {"prompt_tokens": None, "completion_tokens": 2},
        {"prompt_tokens": "10", "completion_tokens": 2},
        {"prompt_tokens": 1.5, "completion_tokens": 2},
        {"prompt_tokens": 1, "completion_tokens": "2"},
        {"prompt_tokens": 1, "completion_tokens": None},
    ],
)
def test_from_openai_returns_none_for_absent_or_malformed_usage(raw: Any) -> None:
    assert Usage.from_openai(raw) is None


def test_from_openai_rejects_boolean_token_counts() -> None:
    assert Usage.from_openai({"prompt_tokens": True, "completion_tokens": False}) is None


def test_from_openai_rejects_negative_token_counts() -> None:
    assert Usage.from_openai({"prompt_tokens": -5, "completion_tokens": 1}) is None


def test_total_tokens_is_prompt_plus_completion() -> None:
    assert Usage(prompt_tokens=7, completion_tokens=5).total_tokens == 12
    assert Usage().total_tokens == 0
