"""Comparing config versions: what only a restart can change, and what a version changed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from modelport.config.load import load_text, version_of
from modelport.config.versions import changes, diff_text, restart_problems
from modelport.store.config_versions import ConfigVersionRow


def loaded(tmp_path: Path, **extra: Any) -> Any:
    data = {
        "store": {"url": f"sqlite:///{tmp_path / 's.db'}"},
        "providers": {"p": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1"}},
        "routes": {"r1": {"targets": [{"provider": "p", "model": "m"}],
                          "prompt": {"version": "v1", "messages": [
                              {"role": "system", "content": "Be brief, {{ name }}."}],
                              "variables": {"name": "you"}}},
                   "r2": {"targets": [{"provider": "p", "model": "m"}]}},
        **extra,
    }
    return load_text(yaml.safe_dump(data), "test", {})


def test_the_same_text_compares_equal_prompt_and_all(tmp_path: Path) -> None:
    a, b = loaded(tmp_path), loaded(tmp_path)
    assert a == b  # compiled prompt templates compare by their source
    assert changes(a, b)["routes"] == {"added": [], "removed": [], "changed": []}
    assert restart_problems(a, b) == []


def test_changes_name_what_was_added_removed_and_changed(tmp_path: Path) -> None:
    a = loaded(tmp_path)
    b = loaded(tmp_path, routes={
        "r1": {"targets": [{"provider": "p", "model": "m"}],
               "prompt": {"version": "v2", "messages": [
                   {"role": "system", "content": "Be brief, {{ name }}."}],
                   "variables": {"name": "you"}}},
        "r3": {"targets": [{"provider": "p", "model": "m"}]}})
    assert changes(a, b)["routes"] == {"added": ["r3"], "removed": ["r2"], "changed": ["r1"]}
    assert changes(a, b)["providers"] == {"added": [], "removed": [], "changed": []}


def test_server_store_and_model_repository_take_a_restart(tmp_path: Path) -> None:
    a = loaded(tmp_path)
    b = loaded(tmp_path, server={"max_body_bytes": 1024},
               store={"url": f"sqlite:///{tmp_path / 'other.db'}"})
    assert [p.split(":")[0] for p in restart_problems(a, b)] == ["server", "store"]


def test_version_of_a_text_is_the_loaded_configs(tmp_path: Path) -> None:
    text = (tmp_path / "c.yaml")
    text.write_text("providers: {p: {kind: openai, base_url: 'http://h/v1'}}\n"
                    "routes: {r: {targets: [{provider: p, model: m}]}}\n")
    assert version_of(text.read_text()) == load_text(text.read_text(), "c", {}).config_version
    assert version_of("routes: [") is None


def test_diff_text_labels_each_side_with_its_number_and_hash() -> None:
    def row(number: int, version: str, text: str) -> ConfigVersionRow:
        return ConfigVersionRow(number, version, text, "apply", "", "", "admin", None, None,
                                None)  # type: ignore[arg-type]

    diff = diff_text(row(1, "aaa", "a: 1\nb: 2\n"), row(2, "bbb", "a: 1\nb: 3\n"))
    assert diff == ("--- version 1 (aaa)\n+++ version 2 (bbb)\n@@ -1,2 +1,2 @@\n a: 1\n"
                    "-b: 2\n+b: 3\n")
    assert diff_text(row(1, "aaa", "x\n"), row(2, "aaa", "x\n")) == ""


def test_a_reload_compiles_only_the_prompts_it_changed(tmp_path: Path) -> None:
    running = loaded(tmp_path)
    same = load_text(yaml.safe_dump({
        "store": {"url": f"sqlite:///{tmp_path / 's.db'}"},
        "providers": {"p": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1"}},
        "routes": {"r1": {"targets": [{"provider": "p", "model": "m"}],
                          "prompt": {"version": "v1", "messages": [
                              {"role": "system", "content": "Be brief, {{ name }}."}],
                              "variables": {"name": "you"}}}}}), "t", {}, running)
    assert same.routes["r1"].prompt is running.routes["r1"].prompt
    changed = load_text(yaml.safe_dump({
        "store": {"url": f"sqlite:///{tmp_path / 's.db'}"},
        "providers": {"p": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1"}},
        "routes": {"r1": {"targets": [{"provider": "p", "model": "m"}],
                          "prompt": {"version": "v1", "messages": [
                              {"role": "system", "content": "Be brief, {{ name }}."}],
                              "variables": {"name": "them"}}}}}), "t", {}, running)
    assert changed.routes["r1"].prompt is not running.routes["r1"].prompt
    assert changed.routes["r1"].prompt.render({}) == [  # type: ignore[union-attr]
        {"role": "system", "content": "Be brief, them."}]
