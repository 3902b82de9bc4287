"""docs/configuration.md lists every key the config schema accepts, in the section of its
parent and in a well-formed table."""

from __future__ import annotations

import re
import typing
from pathlib import Path

from pydantic import BaseModel

from modelport.config import schema

DOC = Path(__file__).resolve().parents[3] / "docs" / "configuration.md"
# a model of the schema -> the heading of its section in the reference
SECTIONS: dict[type[BaseModel], str] = {
    schema.RawConfig: "Top-level keys",
    schema.RawServer: "`server`",
    schema.RawStore: "`store`",
    schema.RawBatch: "`batch`",
    schema.RawOpenAIProvider: "`kind: openai`",
    schema.RawLlamaCppProvider: "`kind: llama_cpp`",
    schema.RawEmbeddingsProvider: "`kind: embeddings`",
    schema.RawModel: "`models`",
    schema.RawRoute: "`routes`",
    schema.RawPrompt: "`routes.prompt`",
    schema.RawShadow: "`routes.shadow`",
    schema.RawOutput: "`routes.output`",
    schema.RawGuards: "`routes.guards`",
    schema.RawDeny: "`routes.guards.deny`",
    schema.RawReviewSample: "`routes.review`",
    schema.RawWebhook: "`routes.review_webhook`",
    schema.RawTools: "`routes.tools`",
    schema.RawPromptMessage: "`routes.prompt.messages`",
    schema.RawTarget: "`routes.targets`",
    schema.RawBreaker: "`routes.targets.breaker`",
    schema.RawCanary: "`routes.targets.canary`",
    schema.RawCanarySLO: "`routes.targets.canary.slo`",
    schema.RawFallbackRules: "`routes.fallback_on`",
    schema.RawKey: "`keys`",
}


def _models_in(annotation: object) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def _every_model() -> set[type[BaseModel]]:
    seen: set[type[BaseModel]] = set()
    pending = [schema.RawConfig]
    while pending:
        model = pending.pop()
        if model not in seen:
            seen.add(model)
            for field in model.model_fields.values():
                pending.extend(_models_in(field.annotation))
    return seen


def _sections() -> dict[str, str]:
    """Heading text -> the text under it, up to the next heading."""
    parts = re.split(r"^#{2,3} (.+)$", DOC.read_text(), flags=re.MULTILINE)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts), 2)}


def _table_keys(text: str) -> set[str]:
    return set(re.findall(r"^\| `([a-z0-9_]+)` \|", text, flags=re.MULTILINE))


def test_every_model_of_the_schema_has_a_section() -> None:
    assert _every_model() == set(SECTIONS), "a new part of the schema needs a section here"
    assert set(SECTIONS.values()) <= set(_sections())


def test_every_key_is_in_its_section_table() -> None:
    sections = _sections()
    missing = [
        f"{heading}: {name}"
        for model, heading in SECTIONS.items()
        for name in model.model_fields
        if name not in _table_keys(sections[heading])
    ]
    assert missing == []


def test_no_section_documents_a_key_the_schema_does_not_accept() -> None:
    sections = _sections()
    extra = [
        f"{heading}: {name}"
        for model, heading in SECTIONS.items()
        for name in _table_keys(sections[heading]) - set(model.model_fields)
    ]
    assert extra == []


def test_tables_are_well_formed() -> None:
    """Every table row has as many cells as its header, and no row stands apart from a
    table (a row after a paragraph renders as text)."""
    lines = DOC.read_text().splitlines()
    for number, line in enumerate(lines):
        if not line.startswith("|"):
            continue
        previous = lines[number - 1] if number else ""
        assert previous.startswith("|") or lines[number + 1].startswith("|---"), (
            f"line {number + 1} is a table row outside a table: {line}")
        header = number
        while lines[header - 1].startswith("|"):
            header -= 1
        cells = len(re.findall(r"(?<!\\)\|", lines[header]))
        assert len(re.findall(r"(?<!\\)\|", line)) == cells, f"line {number + 1}: {line}"
