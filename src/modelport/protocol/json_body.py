"""Reading a JSON request body into an object, within the one nesting limit.

Every JSON body Modelport accepts (OpenAI requests, V2 inference headers, admin calls) is read
here, so that what is accepted can always be written again: orjson reads up to 1,024 levels
but writes at most 254, and a body between the two would parse, then fail on its way to a
provider. ``MAX_DEPTH`` is the one limit; no real request comes near it.

The depth check costs two ``bytes.count`` calls for an ordinary body: a body with fewer
opening brackets than the limit cannot nest deeper, and only one with more is walked.
"""

from __future__ import annotations

from typing import Any

import orjson

from modelport.errors import MalformedBody

MAX_DEPTH = 128


def load_object(raw: bytes | memoryview, what: str = "The request body") -> dict[str, Any]:
    """``raw`` parsed as a JSON object; ``MalformedBody`` (400) for anything else."""
    if not raw:
        raise MalformedBody(f"{what} is empty; send a JSON object.")
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MalformedBody(f"{what} is not valid JSON: {exc.msg}.") from None
    if not isinstance(doc, dict):
        raise MalformedBody(f"{what} must be a JSON object.")
    data = raw if isinstance(raw, bytes) else bytes(raw)
    if data.count(b"{") + data.count(b"[") > MAX_DEPTH and nesting_depth(doc) > MAX_DEPTH:
        raise MalformedBody(f"{what} nests deeper than {MAX_DEPTH} levels.")
    return doc


def nesting_depth(value: Any, stop: int = MAX_DEPTH + 1) -> int:
    """How deep objects and arrays nest in ``value`` (a scalar is 0), counted up to ``stop``;
    iterative, so no input can exhaust the interpreter's stack."""
    deepest = 0
    if not isinstance(value, (dict, list)):
        return 0
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if depth > deepest:
            deepest = depth
            if deepest >= stop:
                return deepest
        children = item.values() if isinstance(item, dict) else item
        pending.extend((child, depth + 1) for child in children
                       if isinstance(child, (dict, list)))
    return deepest
