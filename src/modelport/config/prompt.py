"""A route's prompt: versioned messages that Modelport puts before a chat request's own.

``prompt: {version, variables, messages}``. Each message's content is a Jinja2 template,
compiled once when the config is loaded, in Jinja2's immutable sandbox with strict undefined
variables. Every placeholder a template uses must be declared in ``variables``, with its
default, or ``null`` when each request must give it in its ``metadata``; a placeholder that
is not declared is a config error naming the message. At request time the values come from
the request's ``metadata`` (strings), then the defaults; a required one that is missing is
a 400 naming ``metadata.<name>``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import jinja2
import jinja2.meta
import jinja2.sandbox

from modelport.errors import RequestError

_ENV = jinja2.sandbox.ImmutableSandboxedEnvironment(
    undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True)
MAX_VALUE_CHARS = 8192  # one metadata value put into a prompt


_SIMPLE = re.compile(r"(?:[^{}]|\{(?![{%#])|\}|\{\{\s*[A-Za-z_]\w*\s*\}\})*", re.S)
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_]\w*)\s*\}\}")


@dataclass(frozen=True, slots=True)
class PromptMessage:
    """One message's template. Rendered per request the cheapest way that gives Jinja2's
    result: a template that uses no variable is rendered once, when the config is loaded;
    one made only of text and ``{{ name }}`` placeholders is filled in by joining its pieces
    (a microsecond rather than Jinja2's ten); anything else goes through Jinja2."""

    role: str
    source: str  # the template as written
    template: jinja2.Template = field(compare=False)  # compared by its source
    static: str | None = None  # the text, when it uses no variable
    pieces: tuple[str, ...] | None = None  # text, name, text, name, ... for simple ones

    def render(self, values: Mapping[str, str]) -> str:
        if self.static is not None:
            return self.static
        pieces = self.pieces
        if pieces is None:
            return self.template.render(values)
        return "".join(p if i % 2 == 0 else values[p] for i, p in enumerate(pieces))

    def __hash__(self) -> int:
        return hash((self.role, self.source))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PromptMessage) and (self.role, self.source) == (
            other.role, other.source)


@dataclass(frozen=True, slots=True)
class PromptSettings:
    version: str
    messages: tuple[PromptMessage, ...]
    variables: Mapping[str, str | None]  # name -> default; None: the request must give it

    def render(self, metadata: object) -> list[dict[str, str]]:
        """The messages for one request; 400 for a missing or malformed variable."""
        values = self._values(metadata)
        rendered = []
        for message in self.messages:
            try:
                content = message.render(values)
            except jinja2.TemplateError as exc:  # a filter failing on a value, say
                raise RequestError(f"This route's prompt cannot be filled in: {exc}",
                                   param="metadata") from None
            rendered.append({"role": message.role, "content": content})
        return rendered

    def _values(self, metadata: object) -> dict[str, str]:
        given: Mapping[str, Any] = metadata if isinstance(metadata, dict) else {}
        values: dict[str, str] = {}
        for name, default in self.variables.items():
            value = given.get(name, default)
            if value is None:
                raise RequestError(f"This route's prompt needs metadata.{name}.",
                                   param=f"metadata.{name}")
            if not isinstance(value, str) or len(value) > MAX_VALUE_CHARS:
                raise RequestError(f"metadata.{name} must be a string of at most "
                                   f"{MAX_VALUE_CHARS} characters.", param=f"metadata.{name}")
            values[name] = value
        return values


def compile_prompt(version: str, messages: list[tuple[str, str]],
                   variables: Mapping[str, str | None], where: str,
                   problems: list[str]) -> PromptSettings:
    """Compile each message's template; every problem is added with its key path."""
    compiled = []
    for i, (role, source) in enumerate(messages):
        at = f"{where}.messages[{i}].content"
        try:
            parsed = _ENV.parse(source)
        except jinja2.TemplateSyntaxError as exc:
            problems.append(f"{at}: not a valid template: {exc.message} (line {exc.lineno})")
            continue
        used = jinja2.meta.find_undeclared_variables(parsed)
        template = _ENV.from_string(parsed)  # compiled from the tree: parsed once
        for name in sorted(used):
            if name not in variables:
                problems.append(f"{at}: undefined variable '{name}' (declare it in "
                                f"{where}.variables, with a default or null)")
        static = pieces = None
        if not used:
            try:
                static = template.render()
            except jinja2.TemplateError as exc:
                problems.append(f"{at}: cannot be rendered: {exc}")
                continue
        elif _SIMPLE.fullmatch(source):
            pieces = tuple(_PLACEHOLDER.split(source))
        compiled.append(PromptMessage(role, source, template, static, pieces))
    return PromptSettings(version, tuple(compiled), MappingProxyType(dict(variables)))
