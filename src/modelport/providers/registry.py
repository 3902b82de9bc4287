"""From a provider's settings to the object that calls it: one entry per ``kind``."""

from __future__ import annotations

from modelport.config.settings import ProviderSettings
from modelport.errors import ConfigError
from modelport.providers.base import Provider
from modelport.providers.openai import OpenAIProvider


def build_provider(settings: ProviderSettings) -> Provider:
    if settings.kind == "openai":
        return OpenAIProvider(settings)
    raise ConfigError([f"providers.{settings.name}.kind: unsupported kind '{settings.kind}'"])
