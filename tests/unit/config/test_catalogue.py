"""The models catalogue in the config: targets that name an entry, the prod rule, dates and
statuses, and every problem reported with its key path."""

from __future__ import annotations

import math
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest

from modelport.config import load_settings, validate_file
from modelport.config.catalogue import CatalogueModel

HEAD = """\
providers:
  openai: {kind: openai, base_url: "http://up/v1"}
models:
  mini-2024:
    provider: openai
    model: gpt-4o-mini
    owner: platform
    status: approved
    context_window: 128000
    input_per_mtok: 0.15
    output_per_mtok: 0.6
  old-2023:
    provider: openai
    model: gpt-3.5-turbo
    status: deprecated
    deprecated_at: 2026-10-01
    retire_at: 2027-01-01T12:00:00Z
    successor: mini-2024
  next-2025:
    provider: openai
    model: gpt-5-mini
    status: draft
"""


def problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "modelport.yaml"
    path.write_text(HEAD + text, encoding="utf-8")
    return validate_file(path, {})


def test_a_target_naming_a_catalogue_model_takes_its_provider_model_and_prices(
    tmp_path: Path,
) -> None:
    path = tmp_path / "modelport.yaml"
    path.write_text(HEAD + """\
routes:
  support:
    targets:
      - model: mini-2024
        weight: 2
      - provider: openai
        model: gpt-3.5-turbo
  lab:
    environment: dev
    targets: [{model: next-2025}]
""", encoding="utf-8")
    settings = load_settings(path, {})
    first, second = settings.routes["support"].targets
    assert (first.provider, first.model, first.weight) == ("openai", "gpt-4o-mini", 2)
    assert (first.input_per_mtok, first.output_per_mtok, first.context_window) == (
        0.15, 0.6, 128000)
    assert first.catalogue is settings.models["mini-2024"]
    assert second.catalogue is settings.models["old-2023"]  # matched by provider and model
    assert settings.routes["lab"].targets[0].catalogue is settings.models["next-2025"]


@pytest.mark.parametrize(("routes", "expected"), [
    ("routes:\n  r:\n    targets: [{model: next-2025}]\n",
     "routes.r.targets[0]: model 'next-2025' is draft; routes in prod may use approved or "
     "deprecated models"),
    ("routes:\n  r:\n    targets: [{provider: openai, model: gpt-4.1}]\n",
     "routes.r.targets[0]: openai/gpt-4.1 is not in the models catalogue; routes in prod may "
     "use only catalogue models"),
    ("routes:\n  r:\n    targets: [{model: nosuch}]\n",
     "routes.r.targets[0].model: no model 'nosuch' in the models catalogue (a model outside "
     "it needs a provider)"),
    ("routes:\n  r:\n    targets: [{model: mini-2024, input_per_mtok: 9}]\n",
     "routes.r.targets[0].input_per_mtok: comes from the models catalogue (models.mini-2024)"),
])
def test_targets_that_break_the_catalogue_rules_are_named(
    tmp_path: Path, routes: str, expected: str
) -> None:
    assert expected in problems(tmp_path, routes)


def test_dev_routes_may_use_drafts_and_models_outside_the_catalogue(tmp_path: Path) -> None:
    assert problems(tmp_path, """\
routes:
  lab:
    environment: dev
    targets: [{model: next-2025}, {provider: openai, model: gpt-4.1}]
""") == []


@pytest.mark.parametrize(("entry", "expected"), [
    ("  x: {provider: openai, model: a, status: deprecated}\n",
     "a deprecated model needs deprecated_at"),
    ("  x: {provider: openai, model: a, deprecated_at: 2027-01-02, retire_at: 2027-01-01}\n",
     "retire_at must come after deprecated_at"),
    ("  x: {provider: openai, model: a, successor: nosuch}\n",
     "models.x.successor: no model 'nosuch' in the models catalogue"),
    ("  x: {provider: nosuch, model: a}\n", "models.x.provider: unknown provider 'nosuch'"),
    ("  x: {provider: openai, model: a, status: beta}\n", "models.x.status"),
    ("  x: {provider: openai, model: gpt-4o-mini}\n",
     "models: openai/gpt-4o-mini is in the catalogue more than once"),
])
def test_bad_catalogue_entries_are_named(tmp_path: Path, entry: str, expected: str) -> None:
    found = problems(tmp_path, entry)
    assert any(expected in p for p in found), found


def test_dates_move_a_model_along_and_deprecated_answers_carry_the_rfc_headers() -> None:
    model = CatalogueModel(id="old", provider="p", model="m", status="approved",
                           deprecated_at=1_000.0, retire_at=2_000.0, successor="new")
    assert [model.status_at(t) for t in (999.0, 1_000.0, 1_999.0, 2_000.0)] == [
        "approved", "deprecated", "deprecated", "retired"]
    headers = dict(model.lifecycle_headers(1_500.0))
    assert headers[b"deprecation"] == b"@1000"
    assert parsedate_to_datetime(headers[b"sunset"].decode()).timestamp() == 2_000.0
    assert headers[b"link"] == b'</admin/models/new>; rel="successor-version"'
    retired = CatalogueModel(id="gone", provider="p", model="m", status="retired")
    assert retired.retired_from == -math.inf and retired.status_at(0.0) == "retired"
    assert CatalogueModel(id="a", provider="p", model="m",
                          status="approved").lifecycle_headers(0.0) == []

