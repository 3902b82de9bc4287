"""Kill switches: what an operator turned off, looked up where a request is admitted.

A switch has a scope and, but for ``all``, a name:

- ``all``: every inference request;
- ``route``: one route, or one tensor model (named like a route);
- ``key``: every request of one key (its id);
- ``provider``, ``model``: the targets that call that provider, or that model (a target's
  model name, as the provider knows it), are taken out of every route, as an open breaker
  would be; a route left with no target answers as the switch says.

and a behaviour: ``refuse`` (503 ``disabled`` with the operator's message), ``answer`` (the
operator's text as the answer, in the protocol's shape; a request that cannot carry text,
embeddings or tensors, is refused with it) or ``fallback`` (the request is served by the
named route instead, once: a fallback that is itself off refuses).

The board lives in memory: the request path reads it (one attribute test when nothing is
off) and never the store. ``api``'s admin endpoint and ``policy.sync`` keep it in step with
the store, where switches survive a restart and reach every server sharing it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from modelport.errors import Disabled

Scope = Literal["all", "route", "key", "provider", "model"]
Behaviour = Literal["refuse", "answer", "fallback"]
SCOPES: tuple[str, ...] = ("all", "route", "key", "provider", "model")
BEHAVIOURS: tuple[str, ...] = ("refuse", "answer", "fallback")


@dataclass(frozen=True, slots=True)
class Switch:
    scope: str
    name: str  # "" for all
    behaviour: str
    message: str
    fallback_route: str | None
    reason: str
    actor: str
    created_at: datetime

    @property
    def label(self) -> str:
        return self.scope if not self.name else f"{self.scope}:{self.name}"

    def refusal(self) -> Disabled:
        """503 ``disabled`` with the operator's message."""
        return Disabled(self.message or "This is turned off for now.")


class Switchboard:
    """The switches that are off, by scope and name."""

    __slots__ = ("_off", "any_off", "mutations", "targets_off")

    def __init__(self) -> None:
        self._off: dict[tuple[str, str], Switch] = {}
        self.mutations = 0  # changes made here (put, remove), for the store poller
        self.any_off = False  # the request path's one test when nothing is off
        self.targets_off = False  # some provider or model switch is off

    def load(self, switches: Iterable[Switch]) -> None:
        """Replace every switch with these (the store's rows)."""
        self._off = {(s.scope, s.name): s for s in switches}
        self._changed()

    def put(self, switch: Switch) -> None:
        self._off[(switch.scope, switch.name)] = switch
        self.mutations += 1
        self._changed()

    def remove(self, scope: str, name: str) -> None:
        self._off.pop((scope, name), None)
        self.mutations += 1
        self._changed()

    def switches(self) -> list[Switch]:
        return sorted(self._off.values(), key=lambda s: (s.scope, s.name))

    def for_request(self, route: str, key_id: str | None) -> Switch | None:
        """The switch that stops this request, if any: everything, its key, its route."""
        off = self._off
        return (off.get(("all", "")) or (key_id is not None and off.get(("key", key_id)))
                or off.get(("route", route)) or None)

    def for_target(self, provider: str, model: str) -> Switch | None:
        """The switch that takes a target out, if any: its provider, or its model."""
        off = self._off
        return off.get(("provider", provider)) or off.get(("model", model))

    def _changed(self) -> None:
        self.any_off = bool(self._off)
        self.targets_off = any(scope in ("provider", "model") for scope, _ in self._off)
