"""Which chat format a local model uses, and what the plain format renders."""

from __future__ import annotations

import pytest

pytest.importorskip("jinja2", reason="chat formats need modelport[llm]")

from modelport.runtimes.chat_formats import (
    BUILTIN_FORMATS,
    GEMMA_CHAT_TEMPLATE,
    PLAIN_CHAT_TEMPLATE,
    chat_format,
    render_chat,
)


def _plain(messages: list[dict[str, object]]) -> str:
    return render_chat(PLAIN_CHAT_TEMPLATE, messages, bos_token="<b>", eos_token="<e>")


def test_a_configured_name_wins_over_the_file_template() -> None:
    assert chat_format("gemma", "{{ x }}").template == GEMMA_CHAT_TEMPLATE
    assert chat_format("plain", "{{ x }}") == BUILTIN_FORMATS["plain"]


def test_a_configured_template_is_used_as_written_with_no_stop() -> None:
    assert chat_format("{{ messages }}", None).template == "{{ messages }}"
    assert chat_format("{{ messages }}", None).stop == ()


def test_the_file_template_is_used_when_none_is_configured() -> None:
    assert chat_format(None, "{{ y }}").template == "{{ y }}"


def test_a_model_without_any_template_gets_the_plain_format() -> None:
    chosen = chat_format(None, None)
    assert chosen.template == PLAIN_CHAT_TEMPLATE
    assert chosen.stop == ("\n",)  # one line per answer


def test_plain_renders_a_question_and_answer_transcript_ending_in_answer() -> None:
    text = _plain([{"role": "user", "content": " What is the capital of France? "}])
    assert text.startswith("Questions and short, correct answers.\n\n")
    assert text.endswith("\n\nQuestion: What is the capital of France?\nAnswer:")
    assert "<b>" not in text and "<e>" not in text


def test_plain_puts_the_system_text_first_and_keeps_the_history() -> None:
    text = _plain([{"role": "system", "content": "Be brief."},
                   {"role": "user", "content": "Hi"},
                   {"role": "assistant", "content": "Hello"},
                   {"role": "user", "content": "Bye"}])
    assert text.startswith("Be brief.\n\n")
    assert "Questions and short" not in text
    assert text.endswith("Question: Hi\nAnswer: Hello\n\nQuestion: Bye\nAnswer:")
