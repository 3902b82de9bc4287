"""The route table: route names to their targets, each bound to a live provider.

Built from the settings when the app starts and again for each config version applied;
lookups on the request path are a dict read. Each target carries its runtime state: a
circuit breaker, latency and load statistics for the selection strategies, and an admission
gate (concurrency cap and bounded queue). A new table takes over that state from the one
before it wherever a target is unchanged (same route, settings and provider object), and a
route's canary with its window wherever the canary is unchanged, so that a reload resets
only what it changed.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from modelport.admission.gate import Gate, GateSettings
from modelport.config.settings import RouteSettings, Settings, TargetSettings
from modelport.core.pricing import Price
from modelport.errors import UnknownRoute
from modelport.observability.metrics import Metrics
from modelport.providers.base import Provider
from modelport.routing.breaker import CircuitBreaker
from modelport.routing.canary import Canary
from modelport.routing.strategies import TargetStats, order

log = logging.getLogger("modelport.routing")
BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}


@dataclass(frozen=True, slots=True)
class Target:
    settings: TargetSettings
    provider: Provider
    label: str
    price: Price
    breaker: CircuitBreaker
    stats: TargetStats
    gate: Gate
    provider_timeout_s: float = math.inf  # the provider's own limit on one call
    # by outcome class ("ok" or an error class): a counter with a ``value`` to add to
    attempts: Mapping[str, Any] = field(default_factory=lambda: AttemptCounts(None, "", ""),
                                        compare=False)
    watch: Canary | None = None  # the route's canary, which sees this target's attempts
    is_canary: bool = False  # this target is that canary

    @property
    def model(self) -> str:
        return self.settings.model

    def fits(self, prompt_tokens: int) -> bool:
        window = self.settings.context_window
        return window is None or prompt_tokens <= window


@dataclass(frozen=True, slots=True)
class Route:
    settings: RouteSettings
    targets: tuple[Target, ...]
    weights: tuple[float, ...]
    canary: Canary | None = None
    stable: tuple[Target, ...] = ()  # with a canary: the other targets
    stable_weights: tuple[float, ...] = ()
    shadow: Target | None = None  # where a share of its requests is copied to
    windows: bool = False  # some target declares a context window (a prompt is measured)
    # an output contract or a tool policy may apply to its answers (else: not looked for)
    checks_answers: bool = field(init=False, default=False)
    # every request's plan when it cannot vary (one target, no canary), else None
    fixed_plan: tuple[Target, ...] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        object.__setattr__(self, "checks_answers", self.settings.output is not None
                           or self.settings.tools is not None)
        if self.canary is None and len(self.targets) == 1:
            object.__setattr__(self, "fixed_plan", self.targets)

    @property
    def name(self) -> str:
        return self.settings.name

    def select(self) -> Target:
        return self.targets[0]

    def plan(self, rng: random.Random, caller: str | None = None) -> Sequence[Target]:
        """The targets in the order this request should try them. With a canary, a request
        on its side (``caller`` keeps one caller on one side) tries it first, then the stable
        targets; the others try only the stable targets."""
        canary = self.canary
        if canary is None:
            return self._order(self.targets, self.weights, rng)
        stable = self._order(self.stable, self.stable_weights, rng)
        if canary.on_canary_side(caller, rng):
            return [*(t for t in self.targets if t.is_canary), *stable]
        return stable

    def _order(self, targets: tuple[Target, ...], weights: tuple[float, ...],
               rng: random.Random) -> list[Target]:
        if len(targets) == 1:
            return [targets[0]]
        indexes = order(self.settings.strategy, targets,  # type: ignore[arg-type]
                        [t.stats for t in targets], weights, rng)
        return [targets[i] for i in indexes]


def _target(
    route: RouteSettings, t: TargetSettings, provider: Provider, metrics: Metrics | None,
    provider_timeout_s: float,
) -> Target:
    label = t.label

    def transition(old: str, new: str) -> None:
        log.warning("circuit breaker changed state",
                    extra={"route": route.name, "target": label, "from": old, "to": new})
        if metrics is not None:
            metrics.breaker_state.labels(route.name, label).set(BREAKER_STATES[new])
            metrics.breaker_transitions.labels(route.name, label, new).inc()

    on_wait = None
    if metrics is not None:
        on_wait = metrics.queue_wait.labels(route.name, label).observe
        metrics.breaker_state.labels(route.name, label).set(0)
    return Target(
        settings=t,
        provider=provider,
        label=label,
        price=Price(t.input_per_mtok, t.output_per_mtok),
        breaker=CircuitBreaker(t.breaker, time.monotonic, transition),
        stats=TargetStats(),
        gate=Gate(GateSettings(max_concurrency=t.max_concurrency, max_queue=t.max_queue,
                               queue_timeout_s=t.queue_timeout_s), time.monotonic,
                  on_wait=on_wait),
        provider_timeout_s=provider_timeout_s,
        attempts=AttemptCounts(metrics, route.name, label),
    )


class AttemptCounts(dict[str, Any]):
    """A target's attempts by outcome: ``counts[outcome].value += 1``. Each outcome's
    labelled counter is looked up on its first attempt, then read from the dict (a subscript
    in C, no call); without metrics, a number that nothing reads."""

    __slots__ = ("_label", "_metrics", "_route")

    def __init__(self, metrics: Metrics | None, route: str, label: str) -> None:
        super().__init__()
        self._metrics = metrics
        self._route = route
        self._label = label

    def __missing__(self, outcome: str) -> Any:
        counter = self[outcome] = (
            _Unread() if self._metrics is None
            else self._metrics.attempts.labels(self._route, self._label, outcome))
        return counter


class _Unread:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0


def _route(settings: RouteSettings, targets: tuple[Target, ...],
           before: Route | None = None) -> Route:
    """A route; with a canary target, its canary watches every target's attempts (the
    canary of ``before``, the route as it was, when it is the same one)."""
    weights = tuple(t.weight for t in settings.targets)
    windows = any(t.settings.context_window for t in targets)
    found = [t for t in targets if t.settings.canary is not None]
    if not found:
        return Route(settings, targets, weights, windows=windows)
    canary = before.canary if before is not None else None
    if canary is None or canary.target != found[0].label \
            or canary.settings != found[0].settings.canary:
        canary = Canary(settings.name, found[0].label, found[0].settings.canary)  # type: ignore[arg-type]
    watched = tuple(replace(t, watch=canary, is_canary=t is found[0]) for t in targets)
    stable = tuple(t for t in watched if not t.is_canary)
    return Route(settings, watched, weights, canary, stable,
                 tuple(t.settings.weight for t in stable), windows=windows)


class RouteTable:
    def __init__(
        self, settings: Settings, providers: Mapping[str, Provider],
        metrics: Metrics | None = None, previous: RouteTable | None = None,
    ) -> None:
        """``previous``: the table this one replaces, whose unchanged targets (breakers,
        statistics, gates) and canaries carry over."""
        before = previous._routes if previous is not None else {}
        self._routes: dict[str, Route] = {}
        for name, route in settings.routes.items():
            kept = {t.label: t for t in before[name].targets} if name in before else {}

            def target(t: TargetSettings, kept: dict[str, Target] = kept,
                       route: RouteSettings = route) -> Target:
                old = kept.get(t.label)
                provider = providers[t.provider]
                if old is not None and old.provider is provider and old.settings == t:
                    return replace(old, watch=None, is_canary=False)
                return _target(route, t, provider, metrics,
                               settings.providers[t.provider].timeout_s)

            self._routes[name] = _route(route, tuple(target(t) for t in route.targets),
                                        before.get(name))
        for name, route in settings.routes.items():
            if route.shadow is not None:
                t = route.shadow.target
                self._routes[name] = replace(self._routes[name], shadow=_target(
                    route, t, providers[t.provider], None,
                    settings.providers[t.provider].timeout_s))

    def get(self, name: str) -> Route:
        route = self._routes.get(name)
        if route is None:
            raise UnknownRoute(name)
        return route

    def __iter__(self) -> Iterator[Route]:
        return iter(self._routes.values())

    def __contains__(self, name: object) -> bool:
        return name in self._routes

    def canaries(self) -> Iterator[Canary]:
        for route in self._routes.values():
            if route.canary is not None:
                yield route.canary

    def queued(self) -> Iterator[tuple[str, str, int, int]]:
        """(route, target, queued, in flight) for every target, for the metrics scrape."""
        for route in self._routes.values():
            for target in route.targets:
                yield route.name, target.label, target.gate.queued, target.gate.in_flight
