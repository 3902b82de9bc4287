"""load_settings and validate_file: the documented shape, strictness, secrets, defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelport.config import load_settings, validate_file
from modelport.config.settings import Secret
from modelport.errors import ConfigError

SECRET_VALUE = "sk-test-0123456789abcdef"

DOCUMENTED = """\
providers:
  openai:
    kind: openai
    base_url: https://api.openai.com/v1/
    api_key: env:OPENAI_API_KEY
routes:
  support-summary:
    description: Summaries for the support team
    owner: support
    targets:
      - provider: openai
        model: gpt-4o-mini
"""


def write(tmp_path: Path, text: str, name: str = "modelport.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> list[str]:
    return validate_file(write(tmp_path, text), {} if environ is None else environ)


def provider_yaml(api_key: str = "env:OPENAI_API_KEY", base_url: str = "http://up/v1") -> str:
    return f"""\
providers:
  openai:
    kind: openai
    base_url: {base_url}
    api_key: {api_key}
"""


# The documented shape


def test_documented_shape_loads_into_settings(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, DOCUMENTED), {"OPENAI_API_KEY": SECRET_VALUE})

    provider = settings.providers["openai"]
    assert provider.kind == "openai"
    assert provider.base_url == "https://api.openai.com/v1"  # trailing slash removed
    assert provider.api_key == Secret(SECRET_VALUE)
    route = settings.routes["support-summary"]
    assert route.description == "Summaries for the support team"
    assert route.owner == "support"
    assert [(t.provider, t.model) for t in route.targets] == [("openai", "gpt-4o-mini")]
    assert settings.source == str(tmp_path / "modelport.yaml")


def test_validate_file_returns_no_problems_for_a_valid_file(tmp_path: Path) -> None:
    assert problems_of(tmp_path, DOCUMENTED, {"OPENAI_API_KEY": SECRET_VALUE}) == []


def test_load_settings_reads_the_given_environ_not_the_process_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "from-process-env")

    settings = load_settings(write(tmp_path, DOCUMENTED), {"OPENAI_API_KEY": SECRET_VALUE})

    assert settings.secrets() == (SECRET_VALUE,)


# Defaults


def test_empty_file_gives_documented_defaults(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, ""), {})

    assert settings.server.max_body_bytes == 10 * 1024 * 1024
    assert settings.server.log_level == "info"
    assert settings.store.url == "sqlite:///./.modelport/modelport.db"
    assert dict(settings.providers) == {}
    assert dict(settings.routes) == {}


def test_provider_timeouts_default_to_600s_total_and_10s_connect(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, provider_yaml()), {"OPENAI_API_KEY": "k"})

    provider = settings.providers["openai"]
    assert provider.timeout_s == 600.0
    assert provider.connect_timeout_s == 10.0
    assert provider.max_connections == 1000


def test_provider_without_api_key_has_none(tmp_path: Path) -> None:
    text = "providers:\n  local:\n    kind: openai\n    base_url: http://localhost:8000/v1\n"

    settings = load_settings(write(tmp_path, text), {})

    assert settings.providers["local"].api_key is None
    assert settings.secrets() == ()


def test_settings_are_frozen(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, DOCUMENTED), {"OPENAI_API_KEY": SECRET_VALUE})

    with pytest.raises(AttributeError):
        settings.server.max_body_bytes = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        settings.routes["other"] = settings.routes["support-summary"]  # type: ignore[index]


# Unknown keys, reported with their full path


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("colour: blue\n", "colour: unknown key"),
        ("server:\n  port: 8080\n", "server.port: unknown key"),
        ("store:\n  pool: 3\n", "store.pool: unknown key"),
        (
            provider_yaml() + "    region: eu\n",
            "providers.openai.region: unknown key",
        ),
        (
            DOCUMENTED.replace("    owner: support\n", "    owner: support\n    team: x\n"),
            "routes.support-summary.team: unknown key",
        ),
        (
            DOCUMENTED + "        foo: 1\n",
            "routes.support-summary.targets[0].foo: unknown key",
        ),
    ],
    ids=["root", "server", "store", "provider", "route", "target"],
)
def test_unknown_key_is_reported_with_its_full_key_path(
    tmp_path: Path, text: str, expected: str
) -> None:
    assert problems_of(tmp_path, text, {"OPENAI_API_KEY": "k"}) == [expected]


def test_missing_required_key_is_reported_with_its_path(tmp_path: Path) -> None:
    text = DOCUMENTED.replace("        model: gpt-4o-mini\n", "")

    problems = problems_of(tmp_path, text, {"OPENAI_API_KEY": "k"})

    assert problems == ["routes.support-summary.targets[0].model: required key is missing"]


def test_route_without_targets_is_rejected(tmp_path: Path) -> None:
    text = "routes:\n  empty:\n    targets: []\n"

    problems = problems_of(tmp_path, text)

    assert len(problems) == 1
    assert problems[0].startswith("routes.empty.targets: ")


# Cross-references


def test_target_naming_an_unknown_provider_is_reported_with_its_path(tmp_path: Path) -> None:
    text = DOCUMENTED.replace("      - provider: openai", "      - provider: anthropic")

    problems = problems_of(tmp_path, text, {"OPENAI_API_KEY": "k"})

    assert problems == [
        "routes.support-summary.targets[0].provider: unknown provider 'anthropic' (known: openai)"
    ]


def test_every_dangling_target_is_reported_with_its_own_index(tmp_path: Path) -> None:
    text = (
        DOCUMENTED
        + "      - provider: nope\n        model: m\n"
        + (
            "      - provider: openai\n        model: m2\n"
            "      - provider: gone\n        model: m3\n"
        )
    )

    problems = problems_of(tmp_path, text, {"OPENAI_API_KEY": "k"})

    assert [p.split(":")[0] for p in problems] == [
        "routes.support-summary.targets[1].provider",
        "routes.support-summary.targets[3].provider",
    ]


# Secrets


def test_missing_env_secret_is_reported_by_name(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, provider_yaml(), {})

    assert problems == [
        "providers.openai.api_key: environment variable OPENAI_API_KEY is not set or empty"
    ]


def test_empty_env_secret_is_reported_like_a_missing_one(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, provider_yaml(), {"OPENAI_API_KEY": ""})

    assert problems == [
        "providers.openai.api_key: environment variable OPENAI_API_KEY is not set or empty"
    ]


def test_config_error_never_contains_a_secret_value(tmp_path: Path) -> None:
    # One provider resolves (its value is known), the other fails: the failure must not
    # carry any value from the environment.
    text = provider_yaml() + (
        "  second:\n    kind: openai\n    base_url: http://x\n    api_key: env:MISSING_KEY\n"
    )

    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text), {"OPENAI_API_KEY": SECRET_VALUE})

    assert SECRET_VALUE not in str(info.value)
    assert all(SECRET_VALUE not in p for p in info.value.problems)
    assert info.value.problems == [
        "providers.second.api_key: environment variable MISSING_KEY is not set or empty"
    ]


def test_file_secret_is_read_and_stripped(tmp_path: Path) -> None:
    secret_file = tmp_path / "key.txt"
    secret_file.write_text(f"  {SECRET_VALUE}\n\n", encoding="utf-8")

    settings = load_settings(write(tmp_path, provider_yaml(f"file:{secret_file}")), {})

    key = settings.providers["openai"].api_key
    assert key is not None
    assert key.reveal() == SECRET_VALUE


def test_missing_secret_file_is_reported_with_its_path(tmp_path: Path) -> None:
    missing = tmp_path / "absent.txt"

    problems = problems_of(tmp_path, provider_yaml(f"file:{missing}"))

    assert len(problems) == 1
    assert problems[0].startswith(f"providers.openai.api_key: cannot read secret file {missing}")


def test_whitespace_only_secret_file_is_reported_as_empty(tmp_path: Path) -> None:
    secret_file = tmp_path / "key.txt"
    secret_file.write_text(" \n\t\n", encoding="utf-8")

    problems = problems_of(tmp_path, provider_yaml(f"file:{secret_file}"))

    assert problems == [f"providers.openai.api_key: secret file {secret_file} is empty"]


def test_secret_file_that_is_not_utf8_is_reported_as_a_problem(tmp_path: Path) -> None:
    secret_file = tmp_path / "key.bin"
    secret_file.write_bytes(b"\xff\xfe" + SECRET_VALUE.encode())

    problems = problems_of(tmp_path, provider_yaml(f"file:{secret_file}"))

    assert len(problems) == 1
    assert problems[0].startswith("providers.openai.api_key: ")


@pytest.mark.parametrize("api_key", [SECRET_VALUE, "vault:openai", "env:", "file:", "sk-abc:def"])
def test_api_key_that_is_not_a_secret_reference_is_rejected(tmp_path: Path, api_key: str) -> None:
    problems = problems_of(tmp_path, provider_yaml(f'"{api_key}"'))

    assert len(problems) == 1
    assert problems[0].startswith("providers.openai.api_key: must be a secret reference")
    assert "never written inline" in problems[0]


# Values


@pytest.mark.parametrize("base_url", ["ftp://files.example.com", "api.openai.com/v1", "ws://x"])
def test_base_url_that_is_not_http_is_rejected(tmp_path: Path, base_url: str) -> None:
    problems = problems_of(tmp_path, provider_yaml(base_url=base_url), {"OPENAI_API_KEY": "k"})

    assert problems == ["providers.openai.base_url: must be an http:// or https:// URL with a host"]


def test_base_url_without_a_host_is_rejected(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, provider_yaml(base_url="https://"), {"OPENAI_API_KEY": "k"})

    assert len(problems) == 1
    assert problems[0].startswith("providers.openai.base_url: ")


def test_unknown_provider_kind_is_rejected_with_its_path(tmp_path: Path) -> None:
    text = provider_yaml().replace("kind: openai", "kind: cohere")

    problems = problems_of(tmp_path, text, {"OPENAI_API_KEY": "k"})

    assert len(problems) == 1
    assert problems[0].startswith("providers.openai.kind: ")


def test_out_of_range_number_is_rejected_with_its_path(tmp_path: Path) -> None:
    problems = problems_of(tmp_path, "server:\n  max_body_bytes: 0\n")

    assert len(problems) == 1
    assert problems[0].startswith("server.max_body_bytes: ")


# Several problems at once


def test_every_shape_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = (
        "extra: 1\n"
        + provider_yaml(f'"{SECRET_VALUE}"', base_url="ftp://x")
        + "routes:\n  r:\n    targets:\n      - provider: openai\n        model: m\n        x: 1\n"
    )

    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text), {})

    keys = sorted(p.split(": ")[0] for p in info.value.problems)
    assert keys == [
        "extra",
        "providers.openai.api_key",
        "providers.openai.base_url",
        "routes.r.targets[0].x",
    ]
    assert SECRET_VALUE not in str(info.value)


def test_every_reference_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = provider_yaml() + (
        "routes:\n  a:\n    targets:\n      - provider: ghost\n        model: m\n"
        "  b:\n    targets:\n      - provider: phantom\n        model: m\n"
    )

    problems = problems_of(tmp_path, text, {})

    assert [p.split(": ")[0] for p in problems] == [
        "providers.openai.api_key",
        "routes.a.targets[0].provider",
        "routes.b.targets[0].provider",
    ]


def test_config_error_message_lists_every_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, "a: 1\nb: 2\n"), {})

    assert info.value.message == "invalid configuration:\n  a: unknown key\n  b: unknown key"
    assert info.value.code == "config_invalid"


# The file itself


def test_yaml_syntax_error_is_reported_with_its_line(tmp_path: Path) -> None:
    text = "server:\n  log_level: info\nroutes: [unclosed\n"

    problems = problems_of(tmp_path, text)

    assert len(problems) == 1
    assert problems[0].startswith(str(tmp_path / "modelport.yaml"))
    assert "line 4" in problems[0]


def test_yaml_indentation_error_names_the_offending_line(tmp_path: Path) -> None:
    text = "server:\n  max_body_bytes: 5\n   log_level: info\n"

    problems = problems_of(tmp_path, text)

    assert len(problems) == 1
    assert "at line 3, column" in problems[0]


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "42\n"])
def test_root_that_is_not_a_mapping_is_rejected(tmp_path: Path, text: str) -> None:
    assert problems_of(tmp_path, text) == ["<root>: the config must be a mapping of keys to values"]


def test_missing_file_is_reported(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"

    assert validate_file(missing, {}) == [f"{missing}: file not found"]


def test_directory_instead_of_file_is_reported_as_unreadable(tmp_path: Path) -> None:
    problems = validate_file(tmp_path, {})

    assert len(problems) == 1
    assert problems[0].startswith(f"{tmp_path}: cannot read")


def test_config_file_that_is_not_utf8_is_reported_as_a_problem(tmp_path: Path) -> None:
    path = tmp_path / "modelport.yaml"
    path.write_bytes(b"server:\n  log_level: info\n# caf\xe9\n")

    problems = validate_file(path, {})

    assert len(problems) == 1
    assert problems[0].startswith(str(path))


# config_version


def test_config_version_is_stable_for_the_same_content(tmp_path: Path) -> None:
    env = {"OPENAI_API_KEY": SECRET_VALUE}
    first = load_settings(write(tmp_path, DOCUMENTED, "a.yaml"), env)
    second = load_settings(write(tmp_path, DOCUMENTED, "b.yaml"), env)

    assert first.config_version == second.config_version
    assert len(first.config_version) == 12


def test_config_version_ignores_comments_and_key_order(tmp_path: Path) -> None:
    env = {"OPENAI_API_KEY": SECRET_VALUE}
    providers_part, routes_body = DOCUMENTED.split("routes:\n")
    reordered = "# routes first\nroutes:\n" + routes_body + providers_part

    first = load_settings(write(tmp_path, DOCUMENTED, "a.yaml"), env)
    second = load_settings(write(tmp_path, reordered, "b.yaml"), env)

    assert first.routes == second.routes
    assert first.config_version == second.config_version


def test_config_version_changes_when_the_content_changes(tmp_path: Path) -> None:
    env = {"OPENAI_API_KEY": SECRET_VALUE}
    changed = DOCUMENTED.replace("gpt-4o-mini", "gpt-4o")

    first = load_settings(write(tmp_path, DOCUMENTED, "a.yaml"), env)
    second = load_settings(write(tmp_path, changed, "b.yaml"), env)

    assert first.config_version != second.config_version


def test_config_version_changes_when_the_secret_reference_changes(tmp_path: Path) -> None:
    changed = DOCUMENTED.replace("env:OPENAI_API_KEY", "env:OTHER_KEY")
    env = {"OPENAI_API_KEY": SECRET_VALUE, "OTHER_KEY": SECRET_VALUE}

    first = load_settings(write(tmp_path, DOCUMENTED, "a.yaml"), env)
    second = load_settings(write(tmp_path, changed, "b.yaml"), env)

    assert first.config_version != second.config_version


def test_config_version_does_not_change_when_only_the_secret_value_changes(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, DOCUMENTED)

    first = load_settings(path, {"OPENAI_API_KEY": SECRET_VALUE})
    second = load_settings(path, {"OPENAI_API_KEY": "sk-rotated-value"})

    assert first.secrets() != second.secrets()
    assert first.config_version == second.config_version


# The documentation's own examples


def test_the_example_config_in_the_repository_is_valid() -> None:
    example = Path(__file__).parents[3] / "examples" / "modelport.yaml"

    settings = load_settings(example, {"OPENAI_API_KEY": SECRET_VALUE})

    assert sorted(settings.routes) == ["embed", "support-summary"]
    assert settings.providers["openai"].base_url == "https://api.openai.com/v1"


def test_shape_secret_and_reference_problems_are_reported_together(tmp_path: Path) -> None:
    text = """\
providers:
  upstream-a:
    kind: openai
    base_url: http://a/v1
    api_key: env:UPSTREAM_A_KEY
    colour: blue
routes:
  support-summary:
    targets:
      - provider: upstream-b
        model: m
"""

    problems = problems_of(tmp_path, text, {})

    assert problems == [
        "providers.upstream-a.colour: unknown key",
        "providers.upstream-a.api_key: environment variable UPSTREAM_A_KEY is not set or empty",
        "routes.support-summary.targets[0].provider: unknown provider 'upstream-b'"
        " (known: upstream-a)",
    ]


def test_a_cycle_of_fallback_routes_is_named_once(tmp_path: Path) -> None:
    found = problems_of(tmp_path, provider_yaml() + """\
routes:
  a: {fallback_routes: [b], targets: [{provider: openai, model: m}]}
  b: {fallback_routes: [c], targets: [{provider: openai, model: m}]}
  c: {fallback_routes: [a], targets: [{provider: openai, model: m}]}
  d: {fallback_routes: [a, b], targets: [{provider: openai, model: m}]}
""", {"OPENAI_API_KEY": SECRET_VALUE})
    assert found == ["routes.a.fallback_routes: a cycle of fallbacks: a -> b -> c -> a"]


def test_a_review_webhook_needs_an_http_url_and_a_secret_reference() -> None:
    from modelport.config.load import parse_raw

    route = {"targets": [{"provider": "p", "model": "m"}], "review": "always",
             "review_webhook": {"url": "ftp://receiver", "secret": "inline-secret"}}
    with pytest.raises(ConfigError) as info:
        parse_raw({"providers": {"p": {"kind": "openai", "base_url": "http://h/v1"}},
                   "routes": {"r": route}})
    problems = "\n".join(info.value.problems)
    assert "routes.r.review_webhook.url: must be an http:// or https:// URL" in problems
    assert "routes.r.review_webhook.secret: must be a secret reference" in problems
