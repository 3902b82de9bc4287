"""The ``GET /v1/models`` payloads: one model object per route."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def model_object(route: str, owner: str, created: int) -> dict[str, Any]:
    return {"id": route, "object": "model", "created": created, "owned_by": owner or "modelport"}


def model_list(entries: Iterable[tuple[str, str]], created: int) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [model_object(name, owner, created) for name, owner in entries],
    }
