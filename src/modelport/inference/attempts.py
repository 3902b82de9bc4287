"""Classifying a failed attempt, and what the route's rules say to do next.

Every failure belongs to one error class; each class has its own rule per route
(``fallback_on``): ``retry`` (another attempt, on the next target in the route's order, after
a backoff) or ``fail`` (answer the client with this error now). A provider's context-length
and content-policy refusals are recognised from OpenAI's error codes and messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import orjson

from modelport.errors import (
    ModelportError,
)
from modelport.providers.base import UpstreamReply

ErrorClass = Literal[
    "timeout", "rate_limited", "server_error", "connection", "auth", "context_length",
    "content_policy",
]
# classes a failure of the target itself (not of the request) that count against its breaker
TARGET_FAULTS = frozenset({"timeout", "rate_limited", "server_error", "connection", "auth"})
_UPSTREAM_CLASSES = TARGET_FAULTS  # what an error raised by a provider can declare
_CONTEXT_CODES = frozenset({"context_length_exceeded", "string_above_max_length"})
_CONTEXT_WORDS = ("context length", "context window", "maximum context", "too many tokens")
_POLICY_CODES = frozenset({"content_policy_violation", "content_filter"})


# not frozen: one is made for every request, and a frozen dataclass costs three times
# as much to construct; nothing changes one once made
@dataclass(slots=True)
class Attempt:
    target: str
    status: int
    error_class: str | None
    ms: float


def classify_error(exc: ModelportError) -> ErrorClass:
    """The fallback class the error declares (``errors.py`` draws them); an upstream failure
    that declares none is a server error."""
    declared = exc.fallback_class
    return declared if declared in _UPSTREAM_CLASSES else "server_error"  # type: ignore[return-value]


def classify_reply(reply: UpstreamReply) -> ErrorClass | None:
    """The class of a provider's 4xx answer, when it is one that has a rule."""
    if reply.status not in (400, 413, 422):
        return None
    try:
        error = orjson.loads(reply.body).get("error") or {}
    except (orjson.JSONDecodeError, AttributeError):
        return None
    if not isinstance(error, dict):
        return None
    code = str(error.get("code") or "")
    message = str(error.get("message") or "").lower()
    if code in _CONTEXT_CODES or any(word in message for word in _CONTEXT_WORDS):
        return "context_length"
    if code in _POLICY_CODES or "content policy" in message or "content management" in message:
        return "content_policy"
    return None
