"""Tool permissions: which tools a route's (or a key's) requests may declare and call."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ToolPolicy:
    allow: frozenset[str] | None = None  # None: any name not denied
    deny: frozenset[str] = frozenset()
    strip: bool = False  # drop a tool that is not permitted instead of refusing the request

    def permits(self, name: str) -> bool:
        return name not in self.deny and (self.allow is None or name in self.allow)


def tool_policy(allow: list[str] | None, deny: list[str], on_denied: str) -> ToolPolicy:
    return ToolPolicy(None if allow is None else frozenset(allow), frozenset(deny),
                      on_denied == "strip")
