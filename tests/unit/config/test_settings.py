"""Secret, Settings.secrets() and TargetSettings.label."""

from __future__ import annotations

from types import MappingProxyType

from modelport.config.settings import (
    ProviderSettings,
    Secret,
    ServerSettings,
    Settings,
    StoreSettings,
    TargetSettings,
)

VALUE = "sk-live-abcdef0123456789"


def test_secret_repr_and_str_hide_the_value() -> None:
    secret = Secret(VALUE)

    assert VALUE not in repr(secret)
    assert VALUE not in str(secret)
    assert VALUE not in f"{secret}"
    assert repr(secret) == "Secret('***')"


def test_secret_reveal_returns_the_value() -> None:
    assert Secret(VALUE).reveal() == VALUE


def test_secret_inside_a_settings_repr_stays_hidden() -> None:
    provider = ProviderSettings(name="p", kind="openai", base_url="http://x", api_key=Secret(VALUE))

    assert VALUE not in repr(provider)


def test_secrets_compare_and_hash_by_value() -> None:
    assert Secret(VALUE) == Secret(VALUE)
    assert Secret(VALUE) != Secret("other")
    assert Secret(VALUE) != VALUE
    assert len({Secret(VALUE), Secret(VALUE)}) == 1


def test_settings_secrets_lists_every_resolved_value_and_skips_keyless_providers() -> None:
    providers = {
        "a": ProviderSettings(name="a", kind="openai", base_url="http://a", api_key=Secret("k1")),
        "b": ProviderSettings(name="b", kind="openai", base_url="http://b"),
        "c": ProviderSettings(name="c", kind="openai", base_url="http://c", api_key=Secret("k3")),
    }
    settings = Settings(
        config_version="v",
        server=ServerSettings(),
        store=StoreSettings(),
        providers=MappingProxyType(providers),
        routes=MappingProxyType({}),
    )

    assert settings.secrets() == ("k1", "k3")


def test_target_label_is_provider_slash_model() -> None:
    assert TargetSettings(provider="openai", model="gpt-4o-mini").label == "openai/gpt-4o-mini"
