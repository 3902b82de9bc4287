"""Chat formats: how a local LLM's chat messages become the prompt text it continues.

A format is a Hugging Face style Jinja chat template, rendered in Jinja's immutable sandbox,
plus the stop strings that end the model's turn. Two are built in, by name: ``gemma`` (the
Gemma turn markup, for instruction-tuned Gemma files that carry no template) and ``plain``, a
plain-text question-and-answer transcript for base models, which were never trained on any
turn markup and answer a transcript far better than markup they have not seen. A format named
in the config wins; otherwise the template in the GGUF file; otherwise ``plain``.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from datetime import datetime

import jinja2
import jinja2.ext
import jinja2.sandbox

from modelport.errors import InputRejected


def _raise_exception(message: str) -> None:
    raise jinja2.TemplateError(message)


def _tojson(value: object, indent: int | None = None) -> str:
    return json.dumps(value, ensure_ascii=False, indent=indent)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


@functools.lru_cache(maxsize=16)
def _compile_chat_template(template: str) -> jinja2.Template:
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols]
    )
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    env.filters["tojson"] = _tojson
    return env.from_string(template)


def render_chat(
    template: str,
    messages: list[dict[str, object]],
    *,
    bos_token: str,
    eos_token: str,
    add_generation_prompt: bool = True,
) -> str:
    """Render chat messages to prompt text the way Hugging Face chat templates do.

    The template runs in Jinja's immutable sandbox. Raises ``InputRejected`` when it does
    not compile, refuses the messages (``raise_exception``), or fails on them.
    """
    try:
        return _compile_chat_template(template).render(
            messages=messages,
            bos_token=bos_token,
            eos_token=eos_token,
            add_generation_prompt=add_generation_prompt,
        )
    except jinja2.TemplateError as exc:
        raise InputRejected(f"chat template error: {exc.message or exc}",
                            param="messages") from exc
    except (TypeError, ValueError, LookupError, AttributeError, ArithmeticError) as exc:
        raise InputRejected(f"chat template error: {type(exc).__name__}: {exc}",
                            param="messages") from exc


GEMMA_CHAT_TEMPLATE = r"""{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- elif message['content'] is iterable -%}
        {%- for item in message['content'] -%}
            {%- if item['type'] == 'text' -%}
                {{ item['text'] | trim }}
            {%- endif -%}
        {%- endfor -%}
    {%- else -%}
        {{ raise_exception("Invalid content type") }}
    {%- endif -%}
    {{ '<end_of_turn>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{ '<start_of_turn>model\n' }}
{%- endif -%}
"""
"""The Gemma chat template (system text joins the first user turn; assistant is "model")."""


PLAIN_CHAT_TEMPLATE = r"""
{%- set ns = namespace(system="Questions and short, correct answers.", turns=messages) -%}
{%- if messages and messages[0]['role'] == 'system' -%}
    {%- set ns.system = messages[0]['content'] -%}
    {%- set ns.turns = messages[1:] -%}
{%- endif -%}
{{- ns.system | trim -}}
{{- '\n\nQuestion: Hi!\nAnswer: Hello! How can I help you today?\n\n' -}}
{{- 'Question: What is the largest planet?\n' -}}
{{- 'Answer: Jupiter is the largest planet in the solar system.\n\n' -}}
{%- for message in ns.turns -%}
    {%- if message['role'] == 'assistant' -%}
        {{- 'Answer: ' + (message['content'] | trim) + '\n\n' -}}
    {%- else -%}
        {{- 'Question: ' + (message['content'] | trim) + '\n' -}}
    {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- 'Answer:' -}}
{%- endif -%}
"""
"""A question-and-answer transcript with two worked examples, which is what a small base
model continues sensibly; each answer is one line."""


@dataclass(frozen=True, slots=True)
class ChatFormat:
    template: str
    stop: tuple[str, ...] = ()


BUILTIN_FORMATS = {
    "gemma": ChatFormat(GEMMA_CHAT_TEMPLATE),
    "plain": ChatFormat(PLAIN_CHAT_TEMPLATE, stop=("\n",)),
}


def chat_format(configured: str | None, from_model: str | None) -> ChatFormat:
    """The format a model uses: the configured one (a built-in name or a template), else the
    template its file carries, else ``plain``."""
    if configured is not None:
        return BUILTIN_FORMATS.get(configured) or ChatFormat(configured)
    if from_model is not None:
        return ChatFormat(from_model)
    return BUILTIN_FORMATS["plain"]
