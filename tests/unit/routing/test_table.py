"""RouteTable: route names to targets bound to live providers."""

from __future__ import annotations

from types import MappingProxyType

import pytest

from modelport.config.settings import (
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
