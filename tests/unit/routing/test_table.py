"""RouteTable: route names to targets bound to live providers."""

from __future__ import annotations

from dataclasses import replace as copy
from types import MappingProxyType

import pytest

from modelport.config.settings import (
    CanarySettings,
    ProviderSettings,
    RouteSettings,
    ServerSettings,
    Settings,
    StoreSettings,
    TargetSettings,
)
from modelport.core.operation import Operation
from modelport.errors import UnknownRoute
from modelport.providers.base import UpstreamReply, UpstreamStream
from modelport.routing.table import RouteTable


class FakeProvider:
    """A Provider that is never called: routing only binds it."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def send(self, operation: Operation, body: bytes) -> UpstreamReply:
        raise AssertionError("routing must not call providers")

    async def open_stream(
        self, operation: Operation, body: bytes
    ) -> UpstreamStream | UpstreamReply:
        raise AssertionError("routing must not call providers")


def settings_with(routes: dict[str, list[tuple[str, str]]]) -> Settings:
    providers = {
        name: ProviderSettings(name=name, kind="openai", base_url=f"http://{name}")
        for targets in routes.values()
        for name, _ in targets
    }
    return Settings(
        config_version="v",
        server=ServerSettings(),
        store=StoreSettings(),
        providers=MappingProxyType(providers),
        routes=MappingProxyType(
            {
                name: RouteSettings(
                    name=name,
                    targets=tuple(TargetSettings(provider=p, model=m) for p, m in targets),
                )
                for name, targets in routes.items()
            }
        ),
    )


@pytest.fixture
def table() -> tuple[RouteTable, dict[str, FakeProvider]]:
    settings = settings_with(
        {
            "support-summary": [("openai", "gpt-4o-mini"), ("backup", "llama-3")],
            "embed": [("backup", "bge-small")],
        }
    )
    providers = {"openai": FakeProvider("openai"), "backup": FakeProvider("backup")}
    return RouteTable(settings, providers), providers


def test_get_unknown_route_raises_404_model_not_found_on_param_model(
    table: tuple[RouteTable, dict[str, FakeProvider]],
) -> None:
    routes, _ = table

    with pytest.raises(UnknownRoute) as info:
        routes.get("gpt-5")

    assert (info.value.status, info.value.code, info.value.param) == (
        404,
        "model_not_found",
        "model",
    )


def test_get_returns_the_named_route(table: tuple[RouteTable, dict[str, FakeProvider]]) -> None:
    routes, _ = table

    assert routes.get("embed").name == "embed"


def test_select_returns_the_first_target_bound_to_its_provider(
    table: tuple[RouteTable, dict[str, FakeProvider]],
) -> None:
    routes, providers = table

    target = routes.get("support-summary").select()

    assert target.model == "gpt-4o-mini"
    assert target.provider is providers["openai"]


def test_target_label_is_provider_slash_model(
    table: tuple[RouteTable, dict[str, FakeProvider]],
) -> None:
    routes, _ = table

    labels = [t.label for t in routes.get("support-summary").targets]

    assert labels == ["openai/gpt-4o-mini", "backup/llama-3"]


def test_table_iterates_and_answers_membership_by_route_name(
    table: tuple[RouteTable, dict[str, FakeProvider]],
) -> None:
    routes, _ = table

    assert [r.name for r in routes] == ["support-summary", "embed"]
    assert "embed" in routes
    assert "gpt-4o-mini" not in routes


def test_a_new_table_keeps_the_state_of_unchanged_targets_and_canaries() -> None:
    settings = settings_with({"a": [("openai", "m1"), ("backup", "m2")],
                              "b": [("openai", "m3")]})
    canary = CanarySettings(percent=10)
    routes = dict(settings.routes)
    routes["a"] = copy(routes["a"], targets=(
        routes["a"].targets[0], copy(routes["a"].targets[1], canary=canary)))
    settings = copy(settings, routes=MappingProxyType(routes))
    providers = {"openai": FakeProvider("openai"), "backup": FakeProvider("backup")}
    first = RouteTable(settings, providers)

    routes["b"] = copy(routes["b"], targets=(copy(routes["b"].targets[0], weight=2.0),))
    second = RouteTable(copy(settings, routes=MappingProxyType(routes)), providers,
                        previous=first)
    a1, a2 = first.get("a"), second.get("a")
    assert [t.breaker for t in a2.targets] == [t.breaker for t in a1.targets]
    assert [t.gate for t in a2.targets] == [t.gate for t in a1.targets]
    assert a2.canary is a1.canary is not None  # its window and state go on
    assert all(t.watch is a2.canary for t in a2.targets)
    assert second.get("b").targets[0].breaker is not first.get("b").targets[0].breaker

    moved = {"openai": FakeProvider("openai"), "backup": providers["backup"]}
    third = RouteTable(copy(settings, routes=MappingProxyType(routes)), moved,
                       previous=second)
    assert third.get("a").targets[0].breaker is not a2.targets[0].breaker  # a new provider
    assert third.get("a").targets[1].breaker is a2.targets[1].breaker
    routes["a"] = copy(routes["a"], targets=(
        routes["a"].targets[0], copy(routes["a"].targets[1], canary=CanarySettings(percent=20))))
    fourth = RouteTable(copy(settings, routes=MappingProxyType(routes)), moved,
                        previous=third)
    assert fourth.get("a").canary is not a2.canary  # a changed canary starts afresh
