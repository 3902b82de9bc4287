"""The one place where errors become OpenAI's error shape.

``{"error": {"message", "type", "param", "code"}}``; statuses and codes come from
``modelport.errors``, never from here.
"""

from __future__ import annotations

import orjson

from modelport.errors import ModelportError


def error_body(exc: ModelportError) -> bytes:
    error: dict[str, object] = {"message": exc.message, "type": exc.type,
                                "param": exc.param, "code": exc.code}
    if exc.problems:
        error["problems"] = list(exc.problems)
    return orjson.dumps({"error": error})


def error_event(exc: ModelportError) -> bytes:
    """The final SSE event of a stream that failed after it started."""
    return b"data: " + error_body(exc) + b"\n\n"
