"""Output contracts: what an answer must be before Modelport returns it.

A route's ``output:`` names one or more checks, all of which an answer's text must pass: a
JSON Schema (draft 2020-12, validated with ``jsonschema-rs``, about 5 µs for a 2 KB answer
where the pure-Python ``jsonschema`` takes 370), a list of labels (the answer, trimmed and
case-folded, must be one of them), a maximum length, a regular expression (the whole answer
must match). A request's own ``response_format`` (``json_schema`` or ``json_object``) is a
contract of the same kind. Compiled once, with the config; ``check`` returns what is wrong,
in words a model can act on when asked to repair its answer, or None.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jsonschema_rs
import orjson

from modelport.errors import RequestError

_MAX_ERRORS = 3  # validation errors quoted in one verdict


@dataclass(frozen=True, slots=True)
class OutputContract:
    json_schema: Mapping[str, Any] | None = None  # as written; compared by it
    labels: tuple[str, ...] = ()
    max_chars: int | None = None
    regex: str | None = None
    repair_attempts: int = 1
    json_object: bool = False  # response_format json_object: any JSON object
    _validator: Any = field(default=None, compare=False, repr=False)
    _pattern: re.Pattern[str] | None = field(default=None, compare=False, repr=False)
    _folded: frozenset[str] = field(default=frozenset(), compare=False, repr=False)

    def check(self, text: str) -> str | None:
        """What is wrong with this answer, or None when it keeps the contract."""
        if self.max_chars is not None and len(text) > self.max_chars:
            return f"the answer is {len(text)} characters long; at most {self.max_chars} allowed"
        if self._folded and text.strip().casefold() not in self._folded:
            return f"the answer must be exactly one of: {', '.join(self.labels)}"
        if self._pattern is not None and self._pattern.fullmatch(text) is None:
            return f"the answer must match the regular expression {self.regex}"
        if self._validator is not None or self.json_object:
            return self._check_json(text)
        return None

    def _check_json(self, text: str) -> str | None:
        try:
            document = orjson.loads(_unfenced(text))
        except orjson.JSONDecodeError as exc:
            return f"the answer is not valid JSON ({exc})"
        if self.json_object and not isinstance(document, dict):
            return "the answer must be a JSON object"
        if self._validator is None or self._validator.is_valid(document):
            return None
        errors = []
        for error in self._validator.iter_errors(document):
            where = "/".join(str(p) for p in error.instance_path) or "the answer"
            errors.append(f"at {where}: {error.message}")
            if len(errors) == _MAX_ERRORS:
                break
        return "the answer does not match the JSON Schema: " + "; ".join(errors)


def _unfenced(text: str) -> str:
    """The JSON of an answer that wrapped it in a Markdown code fence, as models do."""
    stripped = text.strip()
    if stripped.startswith("```") and stripped.endswith("```"):
        stripped = stripped[3:-3]
        return stripped[4:] if stripped[:4].lower() == "json" else stripped
    return stripped


def _schema_problem(schema: Mapping[str, Any]) -> tuple[Any, str | None]:
    """A validator for the schema, or why there can be none (the first line of the
    meta-schema's complaint)."""
    try:
        return jsonschema_rs.Draft202012Validator(dict(schema)), None
    except (jsonschema_rs.ValidationError, jsonschema_rs.ReferencingError, ValueError) as exc:
        return None, str(exc).strip().splitlines()[0]


def compile_output(json_schema: Mapping[str, Any] | None, labels: list[str] | None,
                   max_chars: int | None, regex: str | None, repair_attempts: int,
                   where: str, problems: list[str]) -> OutputContract | None:
    """A route's contract; every problem is added with its key path."""
    validator = pattern = None
    if json_schema is not None:
        validator, problem = _schema_problem(json_schema)
        if problem is not None:
            problems.append(f"{where}.json_schema: not a valid JSON Schema: {problem}")
    if regex is not None:
        try:
            pattern = re.compile(regex)
        except re.error as exc:
            problems.append(f"{where}.regex: not a valid regular expression: {exc}")
    return OutputContract(
        json_schema=json_schema, labels=tuple(labels or ()), max_chars=max_chars,
        regex=regex, repair_attempts=repair_attempts, _validator=validator,
        _pattern=pattern, _folded=frozenset(label.strip().casefold() for label in labels or ()))


def requested_contract(body: Mapping[str, Any]) -> OutputContract | None:
    """The contract a request's ``response_format`` asks for, if any (400 for a schema
    that cannot be used)."""
    wanted = body.get("response_format")
    if not isinstance(wanted, dict):
        return None
    kind = wanted.get("type")
    if kind == "json_object":
        return OutputContract(json_object=True, repair_attempts=1)
    if kind != "json_schema":
        return None
    spec = wanted.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, dict) else None
    if not isinstance(schema, dict):
        raise RequestError("response_format.json_schema.schema must be a JSON Schema object.",
                           param="response_format")
    validator, problem = _schema_problem(schema)
    if problem is not None:
        raise RequestError(f"response_format.json_schema.schema is not a valid JSON Schema: "
                           f"{problem}", param="response_format")
    return OutputContract(json_schema=schema, repair_attempts=1, _validator=validator)
