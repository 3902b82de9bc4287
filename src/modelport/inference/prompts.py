"""Putting a route's prompt (``config.prompt``) before a request, in the protocol's shape.

Chat: the prompt's messages go before the request's own. Completions: the prompt's texts,
each followed by a blank line, go before the request's prompt. Embeddings carry no prompt:
a route with one refuses them. The body is changed in place, before admission, so that the
token estimate and what the provider is sent both include the prompt.
"""

from __future__ import annotations

from typing import Any

from modelport.config.prompt import PromptSettings
from modelport.core.operation import Operation
from modelport.errors import RequestError, UnsupportedOperation


def apply_prompt(prompt: PromptSettings, operation: Operation, body: dict[str, Any]) -> None:
    if operation is Operation.EMBEDDING:
        raise UnsupportedOperation("This route puts a prompt before each request; it "
                                   "serves chat and completions, not embeddings.",
                                   param="model")
    rendered = prompt.render(body.get("metadata"))
    if operation is Operation.CHAT:
        messages = body.get("messages")
        if not isinstance(messages, list):
            raise RequestError("messages must be a list of messages.", param="messages")
        body["messages"] = [*rendered, *messages]
        return
    text = body.get("prompt")
    if not isinstance(text, str):
        raise RequestError("On a route with a prompt, prompt must be one string.",
                           param="prompt")
    body["prompt"] = "".join(m["content"] + "\n\n" for m in rendered) + text
