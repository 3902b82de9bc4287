"""Phase two's product: the frozen settings object every other package reads.

Settings are plain frozen dataclasses so that nothing downstream depends on the schema
library, and secrets are wrapped in ``Secret`` so that printing a setting never shows one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


class Secret:
    """A resolved secret. Its repr never shows the value; call ``reveal()`` to use it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, slots=True)
class ServerSettings:
    max_body_bytes: int = 10 * 1024 * 1024
    log_level: str = "info"
    access_log: bool = True


@dataclass(frozen=True, slots=True)
class StoreSettings:
    url: str = "sqlite:///./.modelport/modelport.db"
    ledger: bool = True
    batch_size: int = 100
    flush_interval_s: float = 0.2
    max_pending: int = 100_000
    retry_backoff_s: float = 1.0


@dataclass(frozen=True, slots=True)
class ProviderSettings:
    name: str
    kind: str
    base_url: str
    api_key: Secret | None = None
    timeout_s: float = 600.0
    connect_timeout_s: float = 10.0
    max_connections: int = 1000
    headers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class TargetSettings:
    provider: str
    model: str

    @property
    def label(self) -> str:
        """How the target is named in headers, metrics and the ledger."""
        return f"{self.provider}/{self.model}"


@dataclass(frozen=True, slots=True)
class RouteSettings:
    name: str
    targets: tuple[TargetSettings, ...]
    description: str = ""
    owner: str = ""
    capture: bool = False


@dataclass(frozen=True, slots=True)
class Settings:
    config_version: str
    server: ServerSettings
    store: StoreSettings
    providers: Mapping[str, ProviderSettings]
    routes: Mapping[str, RouteSettings]
    source: str = "<defaults>"

    def secrets(self) -> tuple[str, ...]:
        """Every secret value in force, for the log and response redactors."""
        return tuple(p.api_key.reveal() for p in self.providers.values() if p.api_key)
