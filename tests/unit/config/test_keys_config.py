"""The access-control parts of the config: admin key, declared keys, environments, prices."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from modelport.config import load_settings
from modelport.errors import ConfigError

STRONG = "s" * 20


def _write(tmp_path: Path, **extra: Any) -> Path:
    config: dict[str, Any] = {
        "providers": {"p": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1"}},
        "routes": {
            "r": {"targets": [{"provider": "p", "model": "m", "input_per_mtok": 1.5,
                               "output_per_mtok": 6}], "rpm": 30},
            "d": {"environment": "dev", "targets": [{"provider": "p", "model": "m"}]},
        },
        **extra,
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _problems(path: Path, env: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        load_settings(path, env)
    return exc.value.problems


def test_no_admin_key_and_no_keys_means_open_mode(tmp_path: Path) -> None:
    assert not load_settings(_write(tmp_path), {}).auth_required


def test_admin_key_from_the_environment_turns_keys_on(tmp_path: Path) -> None:
    settings = load_settings(_write(tmp_path), {"MODELPORT_ADMIN_KEY": STRONG})
    assert settings.auth_required and settings.admin_key is not None
    assert STRONG in settings.secrets()


def test_admin_key_reference_in_the_config_wins(tmp_path: Path) -> None:
    path = _write(tmp_path, admin_key="env:MY_ADMIN")
    settings = load_settings(path, {"MY_ADMIN": "a" * 16, "MODELPORT_ADMIN_KEY": STRONG})
    assert settings.admin_key is not None and settings.admin_key.reveal() == "a" * 16


@pytest.mark.parametrize("where", ["admin_key", "token_secret", "keys"])
def test_short_guard_secrets_are_refused(tmp_path: Path, where: str) -> None:
    extra: dict[str, Any] = {"keys": {"k": {"key": "env:SHORT"}}} if where == "keys" else {
        where: "env:SHORT"}
    problems = _problems(_write(tmp_path, **extra), {"SHORT": "tooshort"})
    assert any("at least 16 characters" in p for p in problems)
    assert not any("tooshort" in p for p in problems)


def test_declared_keys_carry_scope_limits_and_budget(tmp_path: Path) -> None:
    path = _write(tmp_path, keys={"web": {
        "key": "env:WEB", "routes": ["r"], "rpm": 5, "tpm": 1000, "max_concurrency": 2,
        "budget_usd": 12.5, "budget_period": "day", "expires_at": "2099-01-01T00:00:00Z"}})
    settings = load_settings(path, {"WEB": STRONG})
    key = settings.keys["web"]
    assert key.routes == ("r",) and key.environment == "prod"
    assert (key.limits.rpm, key.limits.tpm, key.limits.max_concurrency) == (5, 1000, 2)
    assert (key.budget_usd, key.budget_period) == (12.5, "day")
    assert key.expires_at is not None and key.expires_at > 4e9
    assert settings.auth_required
    route = settings.routes["r"]
    assert route.limits.rpm == 30 and route.targets[0].output_per_mtok == 6


def test_key_routes_must_exist_and_share_the_environment(tmp_path: Path) -> None:
    path = _write(tmp_path, keys={"k": {"key": "env:K", "routes": ["nope", "d"]}})
    problems = _problems(path, {"K": STRONG})
    assert "keys.k.routes[0]: unknown route 'nope'" in problems
    assert any(p.startswith("keys.k.routes[1]: route 'd' is in environment 'dev'")
               for p in problems)


def test_two_keys_with_the_same_secret_are_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, keys={"a": {"key": "env:A"}, "b": {"key": "env:B"}})
    problems = _problems(path, {"A": STRONG, "B": STRONG})
    assert problems == ["keys.b.key: the same secret as keys.a.key"]


@pytest.mark.parametrize(("field", "value"), [
    ("rpm", 0), ("rpm", -3), ("tpm", 10**12), ("max_concurrency", "many"),
    ("environment", "staging"), ("budget_usd", -1), ("budget_period", "week"),
])
def test_absurd_key_values_are_refused_with_their_path(
    tmp_path: Path, field: str, value: Any
) -> None:
    path = _write(tmp_path, keys={"k": {"key": "env:K", field: value}})
    problems = _problems(path, {"K": STRONG})
    assert any(p.startswith(f"keys.k.{field}:") for p in problems)


def test_negative_prices_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({
        "providers": {"p": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1"}},
        "routes": {"r": {"targets": [{"provider": "p", "model": "m", "input_per_mtok": -1}]}},
    }))
    assert any(p.startswith("routes.r.targets[0].input_per_mtok:")
               for p in _problems(path, {}))


def test_the_production_example_is_valid() -> None:
    example = Path(__file__).resolve().parents[3] / "examples" / "production.yaml"
    settings = load_settings(example, {"MODELPORT_ADMIN_KEY": STRONG, "OPENAI_API_KEY": "sk",
                                       "WEB_KEY": "w" * 20})
    route = settings.routes["support-summary"]
    assert route.fallback_routes == ("support-summary-small",)
    assert [t.context_window for t in route.targets] == [128000, 8192]
    assert settings.keys["web-frontend"].budget_usd == 200
