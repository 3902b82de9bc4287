"""From a provider's settings to the object that calls it: one entry per ``kind``."""

from __future__ import annotations

from modelport.config.settings import ProviderSettings
from modelport.errors import ConfigError
from modelport.observability.metrics import Metrics
from modelport.providers.base import Provider
from modelport.providers.openai import OpenAIProvider


def build_provider(settings: ProviderSettings, metrics: Metrics) -> Provider:
    if settings.kind == "openai":
        return OpenAIProvider(settings)
    if settings.kind in ("llama_cpp", "embeddings"):
        # Imported only when used: the local runtimes bring numpy and worker machinery.
        from modelport.providers.local import EmbeddingsProvider, LlamaCppProvider

        if settings.kind == "llama_cpp":
            return LlamaCppProvider(settings, metrics)
        return EmbeddingsProvider(settings, metrics)
    raise ConfigError([f"providers.{settings.name}.kind: unsupported kind '{settings.kind}'"])
