"""Configuration: the strict YAML schema, secret references and the frozen settings object."""

from modelport.config.load import load_settings, validate_file
from modelport.config.settings import (
    ProviderSettings,
    RouteSettings,
    ServerSettings,
    Settings,
    StoreSettings,
    TargetSettings,
)

__all__ = [
    "ProviderSettings",
    "RouteSettings",
    "ServerSettings",
    "Settings",
    "StoreSettings",
    "TargetSettings",
    "load_settings",
    "validate_file",
]
