"""The Open Inference Protocol's error body, apart from the tensor codec (and NumPy) in
``protocol.v2``: the middleware renders every ``/v2`` error with it."""

from __future__ import annotations

import orjson

__all__ = ["render_error"]


def render_error(message: str) -> bytes:
    """The protocol's error body: ``{"error": message}``."""
    return orjson.dumps({"error": message})
