"""OpenAI-shaped answers built by Modelport itself, for models it hosts.

Chat completions, text completions (whole or as ``chat.completion.chunk`` /
``text_completion`` stream events) and embeddings, and the reading of the sampling
parameters a local model understands. Bad parameters raise ``RequestError`` naming them.
"""

from __future__ import annotations

import base64
import time
from typing import TYPE_CHECKING, Any

import orjson

from modelport.core.operation import Operation
from modelport.errors import RequestError, UnsupportedOperation

if TYPE_CHECKING:  # NumPy only where embeddings are served (a kill switch's answer is text)
    import numpy as np

MAX_STOP = 4


def _number(body: dict[str, Any], name: str, low: float, high: float, default: float) -> float:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise RequestError(f"'{name}' must be a number from {low:g} to {high:g}.", param=name)
    return float(value)


def generation_params(operation: Operation, body: dict[str, Any]) -> dict[str, Any]:
    """What a local LLM needs from a chat or completion request."""
    params: dict[str, Any] = {}
    if operation is Operation.CHAT:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages or not all(
            isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages
        ):
            raise RequestError("'messages' must be a non-empty list of messages with a role.",
                               param="messages")
        params["messages"] = [_flatten(m) for m in messages]
    elif operation is Operation.COMPLETION:
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        if not isinstance(prompt, str):
            raise RequestError("'prompt' must be a string (one prompt per request).",
                               param="prompt")
        params["prompt"] = prompt
    else:
        raise UnsupportedOperation("This model serves chat and completions, not embeddings.")
    if body.get("n", 1) != 1:
        raise RequestError("'n' must be 1 for this model.", param="n")
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
            raise RequestError("'max_tokens' must be a positive integer.", param="max_tokens")
        params["max_tokens"] = limit
    if body.get("temperature") is not None:  # else the model's own default
        params["temperature"] = _number(body, "temperature", 0, 2, 1.0)
    params["top_p"] = _number(body, "top_p", 0, 1, 1.0)
    if params["top_p"] == 0:
        raise RequestError("'top_p' must be above 0.", param="top_p")
    seed = body.get("seed")
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
            raise RequestError("'seed' must be an integer from 0 to 2^32-1.", param="seed")
        params["seed"] = seed
    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    if stop is not None:
        if not isinstance(stop, list) or len(stop) > MAX_STOP or not all(
            isinstance(s, str) and s for s in stop
        ):
            raise RequestError(f"'stop' must be a string or up to {MAX_STOP} non-empty strings.",
                               param="stop")
        params["stop"] = stop
    return params


def _flatten(message: dict[str, Any]) -> dict[str, Any]:
    """A message with its content as plain text (text parts joined), for chat templates."""
    content = message.get("content")
    if isinstance(content, list):
        texts = [p.get("text", "") for p in content if isinstance(p, dict)
                 and p.get("type") == "text"]
        if len(texts) != len(content):
            raise RequestError("This model takes text content only.", param="messages")
        content = "".join(texts)
    elif content is None:
        content = ""
    elif not isinstance(content, str):
        raise RequestError("Message content must be a string or text parts.", param="messages")
    return {"role": message["role"], "content": content}


def completion_body(operation: Operation, request_id: str, model: str, text: str,
                    finish_reason: str, prompt_tokens: int, completion_tokens: int) -> bytes:
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
             "total_tokens": prompt_tokens + completion_tokens}
    created = int(time.time())
    if operation is Operation.CHAT:
        return orjson.dumps({
            "id": f"chatcmpl-{request_id}", "object": "chat.completion", "created": created,
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "logprobs": None, "finish_reason": finish_reason}],
            "usage": usage,
        })
    return orjson.dumps({
        "id": f"cmpl-{request_id}", "object": "text_completion", "created": created,
        "model": model,
        "choices": [{"index": 0, "text": text, "logprobs": None,
                     "finish_reason": finish_reason}],
        "usage": usage,
    })


class ChunkWriter:
    """The SSE events of one streamed answer."""

    def __init__(self, operation: Operation, request_id: str, model: str) -> None:
        self._chat = operation is Operation.CHAT
        self._head = {
            "id": f"{'chatcmpl' if self._chat else 'cmpl'}-{request_id}",
            "object": "chat.completion.chunk" if self._chat else "text_completion",
            "created": int(time.time()),
            "model": model,
        }
        self._started: set[int] = set()  # the choices whose first delta was written

    def delta(self, text: str, finish_reason: str | None = None, index: int = 0) -> bytes:
        if self._chat:
            delta: dict[str, Any] = {"content": text} if text or finish_reason is None else {}
            if index not in self._started:
                delta["role"] = "assistant"
                self._started.add(index)
            choice: dict[str, Any] = {"index": index, "delta": delta, "logprobs": None,
                                      "finish_reason": finish_reason}
        else:
            choice = {"index": index, "text": text, "logprobs": None,
                      "finish_reason": finish_reason}
        return self._event({**self._head, "choices": [choice]})

    def tool_calls(self, calls: list[Any], index: int = 0) -> bytes:
        """A whole answer's tool calls as one chat delta (each call with its index)."""
        indexed = [{**call, "index": i} for i, call in enumerate(calls) if isinstance(call, dict)]
        return self._event({**self._head, "choices": [{
            "index": index, "delta": {"tool_calls": indexed}, "logprobs": None,
            "finish_reason": None}]})

    def usage(self, prompt_tokens: int, completion_tokens: int) -> bytes:
        return self._event({**self._head, "choices": [], "usage": {
            "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}})

    @staticmethod
    def _event(payload: dict[str, Any]) -> bytes:
        return b"data: " + orjson.dumps(payload) + b"\n\n"

    done = b"data: [DONE]\n\n"


def embedding_inputs(body: dict[str, Any], limit: int) -> list[str]:
    """The texts of an embeddings request (token-id inputs are not supported)."""
    value = body.get("input")
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise RequestError("'input' must be a string or a non-empty list of strings.",
                           param="input")
    if len(texts) > limit:
        raise RequestError(f"'input' may hold at most {limit} texts.", param="input")
    if any(not t for t in texts):
        raise RequestError("'input' must not contain empty strings.", param="input")
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise RequestError("'encoding_format' must be 'float' or 'base64'.",
                           param="encoding_format")
    if body.get("dimensions") is not None:
        raise RequestError("This model does not support 'dimensions'.", param="dimensions")
    return texts


def embeddings_body(model: str, vectors: np.ndarray, prompt_tokens: int,
                    encoding: str = "float") -> bytes:
    data = []
    for i, row in enumerate(vectors):
        embedding: Any = (base64.b64encode(row.astype("float32").tobytes()).decode()
                          if encoding == "base64" else row)
        data.append({"object": "embedding", "index": i, "embedding": embedding})
    return orjson.dumps({
        "object": "list", "data": data, "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }, option=orjson.OPT_SERIALIZE_NUMPY)
