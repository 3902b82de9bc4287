"""Holding answers to their output contract (``config.output``) before they are used.

The contracts of a request are its route's ``output:`` and its own ``response_format``. An
answer that breaks one is not returned: the use case (``inference.proxy``) asks again with a
repair message that quotes what was wrong (chat only, ``repair_attempts`` times), then tries
the route's fallback routes, and only then gives up with 502 ``invalid_output``. Every
answer says what happened in ``x-modelport-validation``: passed, repaired, failed, skipped
(no contract), or final (a stream whose verdict is its last event).

A stream is validated whole before it is released (``stream_validation: buffer``, the
default: the answer is fetched whole, checked, then sent as a stream), or streams as it comes
and ends with a verdict event before ``[DONE]`` (``final``): ``StreamVerdict``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from modelport.config.output import OutputContract, requested_contract
from modelport.config.settings import RouteSettings
from modelport.config.tools import ToolPolicy
from modelport.core.context import RequestContext
from modelport.core.operation import Operation
from modelport.errors import ToolNotAllowed
from modelport.protocol.openai.replies import ChunkWriter
from modelport.protocol.sse import event_data
from modelport.providers.base import UpstreamReply

VALIDATION_HEADER = b"x-modelport-validation"
SKIPPED = (VALIDATION_HEADER, b"skipped")
REPAIR = ("Your previous answer could not be used: {problem}. Answer again, in full, so "
          "that it meets this requirement; reply with the corrected answer only.")
_TEXT_OPERATIONS = (Operation.CHAT, Operation.COMPLETION)


def contracts_of(route: RouteSettings, operation: Operation,
                 body: dict[str, Any]) -> tuple[OutputContract, ...]:
    """The contracts an answer to this request must keep (400 for an unusable
    ``response_format``); none for embeddings."""
    if operation not in _TEXT_OPERATIONS:
        return ()
    requested = requested_contract(body) if "response_format" in body else None
    found = (route.output, requested)
    return tuple(c for c in found if c is not None)


def answer_texts(operation: Operation, document: Any) -> list[str]:
    """The text of each choice of a chat or text completion."""
    choices = document.get("choices") if isinstance(document, dict) else None
    if not isinstance(choices, list):
        return []
    texts = []
    for choice in choices:
        if not isinstance(choice, dict):
            texts.append("")
        elif operation is Operation.CHAT:
            message = choice.get("message")
            content = message.get("content") if isinstance(message, dict) else None
            texts.append(content if isinstance(content, str) else "")
        else:
            texts.append(choice["text"] if isinstance(choice.get("text"), str) else "")
    return texts


def problem_of(contracts: Sequence[OutputContract | ToolCalls], operation: Operation,
               reply: UpstreamReply) -> str | None:
    """What is wrong with an answer, or None when every choice keeps every contract."""
    document = reply.parsed()
    tools = [c for c in contracts if isinstance(c, ToolCalls)]
    calls = _tool_names(operation, document) if tools else []
    for contract in tools:
        problem = contract.check_calls(calls)
        if problem is not None:
            return problem
    texts = answer_texts(operation, document)
    if not texts:
        return "the answer has no choices"
    if calls:
        return None  # an answer that calls tools has no text to hold to a contract
    return _problem_of_texts(contracts, texts)


def _problem_of_texts(contracts: Sequence[OutputContract | ToolCalls],
                      texts: Sequence[str]) -> str | None:
    for i, text in enumerate(texts):
        for contract in contracts:
            problem = contract.check(text)
            if problem is not None:
                return problem if len(texts) == 1 else f"choice {i}: {problem}"
    return None


def repair_body(body: dict[str, Any], operation: Operation, reply: UpstreamReply,
                problem: str) -> dict[str, Any] | None:
    """The request again, with the bad answer and a message saying what to fix (chat only:
    a text completion has no turn to say it in)."""
    messages = body.get("messages")
    if operation is not Operation.CHAT or not isinstance(messages, list):
        return None
    texts = answer_texts(operation, reply.parsed())
    return {**body, "messages": [
        *messages, {"role": "assistant", "content": texts[0] if texts else ""},
        {"role": "user", "content": REPAIR.format(problem=problem)}]}


def as_stream(reply: UpstreamReply, operation: Operation, ctx: RequestContext,
              model: str, with_usage: bool) -> UpstreamReply:
    """A validated whole answer sent as the stream the client asked for."""
    document = reply.parsed()
    writer = ChunkWriter(operation, ctx.request_id, model)
    events = []
    choices = document.get("choices", []) if isinstance(document, dict) else []
    for index, text in enumerate(answer_texts(operation, document)):
        finish = choices[index].get("finish_reason") or "stop"
        events.append(writer.delta(text, None, index))
        message = choices[index].get("message")
        calls = message.get("tool_calls") if isinstance(message, dict) else None
        if isinstance(calls, list) and calls:
            events.append(writer.tool_calls(calls, index))
        events.append(writer.delta("", finish, index))
    if with_usage and ctx.usage is not None:
        events.append(writer.usage(ctx.usage.prompt_tokens, ctx.usage.completion_tokens))
    events.append(writer.done)
    return UpstreamReply(200, b"".join(events), "text/event-stream; charset=utf-8")


class StreamVerdict:
    """``stream_validation: final``: the streamed text, collected as it passes, checked when
    the provider's ``[DONE]`` arrives, and the verdict sent as one last event before it."""

    __slots__ = ("_contracts", "_ctx", "_operation", "_texts", "emitted")

    def __init__(self, contracts: Sequence[OutputContract | ToolCalls], operation: Operation,
                 ctx: RequestContext) -> None:
        self._contracts = contracts
        self._operation = operation
        self._ctx = ctx
        self._texts: dict[int, list[str]] = {}
        self.emitted = False

    def pass_on(self, event: bytes) -> bytes:
        """A data event, forwarded as it came, its text noted (``[DONE]`` is the relay's:
        it sends ``final()`` before it)."""
        try:
            chunk = orjson.loads(event_data(event))
        except orjson.JSONDecodeError:
            return event
        for choice in chunk.get("choices") or () if isinstance(chunk, dict) else ():
            if not isinstance(choice, dict):
                continue
            delta = choice.get("delta") if self._operation is Operation.CHAT else choice
            text = delta.get("content" if self._operation is Operation.CHAT else "text") \
                if isinstance(delta, dict) else None
            if isinstance(text, str) and text:
                self._texts.setdefault(int(choice.get("index") or 0), []).append(text)
        return event

    def final(self) -> bytes:
        """The verdict event (once)."""
        if self.emitted:
            return b""
        self.emitted = True
        texts = ["".join(self._texts[i]) for i in sorted(self._texts)] or [""]
        problem = _problem_of_texts(self._contracts, texts)
        outcome = self._ctx.validation = "passed" if problem is None else "failed"
        return b"data: " + orjson.dumps({"object": "modelport.validation",
                                         "validation": outcome, "problem": problem}) + b"\n\n"


@dataclass(frozen=True, slots=True)
class ToolCalls:
    """The tool calls of an answer must name tools the request declared and its route's
    and key's tool permissions allow: a call to any other is a broken contract."""

    allowed: frozenset[str]
    repair_attempts: int = 1

    def check(self, text: str) -> str | None:
        return None  # the text is not its concern

    def check_calls(self, names: Sequence[str]) -> str | None:
        for name in names:
            if name not in self.allowed:
                return f"the answer calls the tool '{name}', which is not allowed here"
        return None


def _tool_names(operation: Operation, document: Any) -> list[str]:
    names: list[str] = []
    choices = document.get("choices") if isinstance(document, dict) else None
    for choice in choices if isinstance(choices, list) and operation is Operation.CHAT else ():
        message = choice.get("message") if isinstance(choice, dict) else None
        if not isinstance(message, dict):
            continue
        for call in message.get("tool_calls") or ():
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict):
                names.append(str(function.get("name")))
        legacy = message.get("function_call")
        if isinstance(legacy, dict):
            names.append(str(legacy.get("name")))
    return names


def permitted_tools(body: dict[str, Any], policies: Sequence[ToolPolicy],
                    strip: bool) -> tuple[dict[str, Any], ToolCalls]:
    """The body with the tools it may declare (403 ``tool_not_allowed`` for one that is
    not permitted, or, with ``strip``, the request without it), and the check its answer's
    tool calls must pass."""
    def permitted(name: str) -> bool:
        return all(policy.permits(name) for policy in policies)

    tools: list[Any] = body["tools"] if isinstance(body.get("tools"), list) else []
    functions: list[Any] = body["functions"] if isinstance(body.get("functions"),
                                                            list) else []
    declared = [_tool_name(t) for t in tools] + [
        str(f.get("name")) for f in functions if isinstance(f, dict)]
    denied = [name for name in declared if not permitted(name)]
    if denied and not strip:
        raise ToolNotAllowed(f"The tool '{denied[0]}' is not allowed here.", param="tools")
    if denied:
        body = dict(body)
        kept = [t for t in tools if permitted(_tool_name(t))]
        kept_functions = [f for f in functions
                          if isinstance(f, dict) and permitted(str(f.get("name")))]
        for key, value in (("tools", kept), ("functions", kept_functions)):
            if key in body:
                if value:
                    body[key] = value
                else:
                    del body[key]
        choice = body.get("tool_choice")
        if (isinstance(choice, dict) and not permitted(_tool_name(choice))) or not kept:
            body.pop("tool_choice", None)
    return body, ToolCalls(frozenset(n for n in declared if permitted(n)))


def _tool_name(tool: Any) -> str:
    function = tool.get("function") if isinstance(tool, dict) else None
    return str(function.get("name")) if isinstance(function, dict) else ""
