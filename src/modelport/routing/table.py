"""The route table: route names to their targets, each bound to a live provider.

Built once from the settings when the app starts; lookups on the request path are a dict
read. Target selection is ``Route.select``; strategies other than the first target plug in
there.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from modelport.config.settings import RouteSettings, Settings, TargetSettings
from modelport.core.pricing import Price
from modelport.errors import UnknownRoute
from modelport.providers.base import Provider


@dataclass(frozen=True, slots=True)
class Target:
    settings: TargetSettings
    provider: Provider
    label: str
    price: Price

    @property
    def model(self) -> str:
        return self.settings.model


@dataclass(frozen=True, slots=True)
class Route:
    settings: RouteSettings
    targets: tuple[Target, ...]

    @property
    def name(self) -> str:
        return self.settings.name

    def select(self) -> Target:
        return self.targets[0]


class RouteTable:
    def __init__(self, settings: Settings, providers: Mapping[str, Provider]) -> None:
        self._routes = {
            name: Route(
                settings=route,
                targets=tuple(
                    Target(settings=t, provider=providers[t.provider], label=t.label,
                           price=Price(t.input_per_mtok, t.output_per_mtok))
                    for t in route.targets
                ),
            )
            for name, route in settings.routes.items()
        }

    def get(self, name: str) -> Route:
        route = self._routes.get(name)
        if route is None:
            raise UnknownRoute(name)
        return route

    def __iter__(self) -> Iterator[Route]:
        return iter(self._routes.values())

    def __contains__(self, name: object) -> bool:
        return name in self._routes
