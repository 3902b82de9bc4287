"""Reading just enough of an OpenAI request body to route it.

The body is parsed once into a dict; unknown fields are kept and passed through to the
provider untouched, so that new client features work on day one.
"""

from __future__ import annotations

from typing import Any

import orjson

from modelport.errors import RequestError
from modelport.protocol.json_body import load_object

parse_body = load_object  # the body as a JSON object (400 for anything else)


def requested_route(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise RequestError("'model' is required and must be a non-empty string.", param="model")
    return model


def wants_stream(body: dict[str, Any]) -> bool:
    stream = body.get("stream", False)
    if stream is None:
        return False
    if not isinstance(stream, bool):
        raise RequestError("'stream' must be a boolean.", param="stream")
    return stream


def client_wants_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    if options is None:
        return False
    if not isinstance(options, dict):
        raise RequestError("'stream_options' must be an object.", param="stream_options")
    return options.get("include_usage") is True


def for_target(body: dict[str, Any], model: str, *, stream_usage: bool) -> bytes:
    """The body to send upstream: the target's model name, and usage asked for on streams."""
    body["model"] = model
    if stream_usage:
        options = body.get("stream_options")
        body["stream_options"] = {**(options or {}), "include_usage": True}
    return orjson.dumps(body)


DEFAULT_COMPLETION_ESTIMATE = 256
_CHARS_PER_TOKEN = 4
_PER_MESSAGE_TOKENS = 4


def estimate_tokens(body: dict[str, Any], *, embedding: bool = False) -> tuple[int, int]:
    """A cheap pre-call guess of (prompt, completion) tokens, for limits and budgets; the
    provider's reported usage settles it afterwards."""
    chars = 0
    messages = body.get("messages")
    count = 0
    if isinstance(messages, list):
        for message in messages:
            count += 1
            if isinstance(message, dict):
                chars += _text_chars(message.get("content"))
    for field in ("prompt", "input"):
        chars += _text_chars(body.get(field))
    prompt = chars // _CHARS_PER_TOKEN + count * _PER_MESSAGE_TOKENS + 1
    if embedding:
        return prompt, 0
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    completion = limit if isinstance(limit, int) and limit > 0 else DEFAULT_COMPLETION_ESTIMATE
    n = body.get("n")
    if isinstance(n, int) and n > 1:
        completion *= n
    return prompt, completion


def open_completion(body: dict[str, Any]) -> int:
    """How many answers (``n``) a request asks for without any limit on their tokens; 0
    when it sets ``max_tokens`` or ``max_completion_tokens``."""
    if body.get("max_tokens") is not None or body.get("max_completion_tokens") is not None:
        return 0
    n = body.get("n")
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 1 else 1


def _text_chars(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        return sum(_text_chars(v.get("text") if isinstance(v, dict) else v) for v in value)
    return 0


def completion_estimate(reply: Any) -> int:
    """A guess of an answer's completion tokens from its text, for a provider that reports
    no usage: its choices' text at the same characters per token as ``estimate_tokens``."""
    chars, count = 0, 0
    choices = reply.get("choices") if isinstance(reply, dict) else None
    if isinstance(choices, list):
        for choice in choices:
            if isinstance(choice, dict):
                count += 1
                message = choice.get("message")
                text = message.get("content") if isinstance(message, dict) else choice.get("text")
                chars += _text_chars(text)
    return chars // _CHARS_PER_TOKEN + count
