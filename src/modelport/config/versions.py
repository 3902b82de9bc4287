"""Comparing two config versions: what a reload may change, and what it changed.

A running server applies a new config version in place, except for what it was started with
and cannot swap while it serves: its listening and logging settings (``server``), its store
(``store``) and its tensor model repository (``model_repository``). A version that changes
any of these is refused, naming each, and the running one stays.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any, Protocol

from modelport.config.settings import Settings

_RESTART_ONLY = ("server", "store", "batch", "model_repository")


def restart_problems(before: Settings, after: Settings) -> list[str]:
    """One problem per section that only a restart can change."""
    return [f"{name}: differs from the running config, and takes a restart to change "
            "(the running config was kept)"
            for name in _RESTART_ONLY if getattr(before, name) != getattr(after, name)]


def _compare(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, list[str]]:
    return {
        "added": sorted(set(after) - set(before)),
        "removed": sorted(set(before) - set(after)),
        "changed": sorted(n for n in set(before) & set(after) if before[n] != after[n]),
    }


def changes(before: Settings, after: Settings) -> dict[str, dict[str, list[str]]]:
    """Routes, providers, models and keys added, removed and changed, by name."""
    return {
        "routes": _compare(before.routes, after.routes),
        "providers": _compare(before.providers, after.providers),
        "models": _compare(before.models, after.models),
        "keys": _compare(before.keys, after.keys),
    }


class _Kept(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def config_version(self) -> str: ...
    @property
    def text(self) -> str: ...


def diff_text(before: _Kept, after: _Kept) -> str:
    """A unified diff of two kept versions' texts, each labelled with its number and hash."""
    return "".join(difflib.unified_diff(
        before.text.splitlines(keepends=True), after.text.splitlines(keepends=True),
        fromfile=f"version {before.id} ({before.config_version})",
        tofile=f"version {after.id} ({after.config_version})"))
