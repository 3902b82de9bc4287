"""A route's prompt in the config: compiled once, every placeholder declared, every problem
named by its key path; rendered per request from metadata and defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelport.config import validate_file
from modelport.config.prompt import compile_prompt
from modelport.errors import RequestError


@pytest.mark.parametrize(("prompt", "expected"), [
    ("{version: v1, messages: [{role: system, content: 'Hi {{ who }}'}]}",
     "routes.r.prompt.messages[0].content: undefined variable 'who' (declare it in "
     "routes.r.prompt.variables, with a default or null)"),
    ("{version: v1, messages: [{role: system, content: 'Hi {{ who'}]}",
     "routes.r.prompt.messages[0].content: not a valid template"),
    ("{version: v1, messages: []}", "routes.r.prompt.messages"),
    ("{version: v1, variables: {'bad name': x}, messages: [{role: system, content: hi}]}",
     "routes.r.prompt.variables"),
    ("{version: v1, messages: [{role: robot, content: hi}]}",
     "routes.r.prompt.messages[0].role"),
])
def test_a_bad_prompt_is_a_config_error_naming_the_key(
    tmp_path: Path, prompt: str, expected: str
) -> None:
    path = tmp_path / "modelport.yaml"
    path.write_text(f"""\
providers:
  openai: {{kind: openai, base_url: "http://up/v1"}}
routes:
  r:
    prompt: {prompt}
    targets: [{{provider: openai, model: m}}]
""", encoding="utf-8")
    found = validate_file(path, {})
    assert any(expected in p for p in found), found


def test_rendering_takes_metadata_then_defaults_and_refuses_what_is_missing() -> None:
    problems: list[str] = []
    prompt = compile_prompt("v1", [("system", "{{ a }} and {{ b }}")],
                            {"a": "A", "b": None}, "routes.r.prompt", problems)
    assert problems == []
    assert prompt.render({"b": "B"}) == [{"role": "system", "content": "A and B"}]
    assert prompt.render({"a": "x", "b": "y"})[0]["content"] == "x and y"
    with pytest.raises(RequestError) as info:
        prompt.render(None)
    assert info.value.param == "metadata.b"
    sandboxed = compile_prompt("v1", [("system", "{{ b.__class__ }}")], {"b": None},
                               "routes.r.prompt", problems)
    with pytest.raises(RequestError, match="unsafe"):  # the sandbox keeps internals out
        sandboxed.render({"b": "x"})


@pytest.mark.parametrize("source", [
    "Plain text, once.\n", "Hi {{ a }}, {{b}}!", "{{a}}{{ b }}", 'JSON {"k": {"j": 1}} {{ a }}',
    "Trailing newline {{ a }}\n\n", "{{ a | upper }} {% if b %}B{% endif %}",
])
def test_every_way_of_rendering_gives_what_jinja2_gives(source: str) -> None:
    problems: list[str] = []
    prompt = compile_prompt("v1", [("system", source)], {"a": "x<y>&", "b": "z"},
                            "routes.r.prompt", problems)
    assert problems == []
    message = prompt.messages[0]
    values = {"a": "x<y>&", "b": "z"}
    assert message.render(values) == message.template.render(values)
    fast = message.static is not None or message.pieces is not None
    assert fast == ("|" not in source and "%" not in source)
