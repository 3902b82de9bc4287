"""Parsing just enough of an OpenAI request to route it, and rewriting it for a target."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from modelport.errors import MalformedBody, RequestError
from modelport.protocol.openai.request import (
    client_wants_usage,
    for_target,
    parse_body,
    requested_route,
    wants_stream,
)

# parse_body


def test_parse_body_returns_the_json_object() -> None:
    assert parse_body(b'{"model": "m", "n": 2}') == {"model": "m", "n": 2}


@pytest.mark.parametrize(
    "raw",
    [b"", b"{not json", b"[1, 2]", b'"text"', b"42", b"null"],
    ids=["empty", "invalid", "array", "string", "number", "null"],
)
def test_parse_body_rejects_anything_but_a_json_object_as_malformed_400(raw: bytes) -> None:
    with pytest.raises(MalformedBody) as info:
        parse_body(raw)

    assert info.value.status == 400
    assert info.value.code == "invalid_json"


def test_parse_body_invalid_json_message_says_so() -> None:
    with pytest.raises(MalformedBody, match="not valid JSON"):
        parse_body(b'{"model": ')


# requested_route


def test_requested_route_is_the_model_field() -> None:
    assert requested_route({"model": "support-summary"}) == "support-summary"


@pytest.mark.parametrize("body", [{}, {"model": ""}, {"model": 3}, {"model": None}])
def test_requested_route_requires_a_non_empty_string_model(body: dict[str, Any]) -> None:
    with pytest.raises(RequestError) as info:
        requested_route(body)

    assert info.value.status == 400
    assert info.value.param == "model"


# wants_stream


@pytest.mark.parametrize(
    ("body", "expected"),
    [({}, False), ({"stream": None}, False), ({"stream": False}, False), ({"stream": True}, True)],
)
def test_wants_stream_reads_the_stream_flag(body: dict[str, Any], expected: bool) -> None:
    assert wants_stream(body) is expected


@pytest.mark.parametrize("value", ["true", 1, 0, [], {}])
def test_wants_stream_rejects_a_non_boolean_with_400_on_param_stream(value: Any) -> None:
    with pytest.raises(RequestError) as info:
        wants_stream({"stream": value})

    assert info.value.status == 400
    assert info.value.param == "stream"


# client_wants_usage


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({}, False),
        ({"stream_options": None}, False),
        ({"stream_options": {}}, False),
        ({"stream_options": {"include_usage": False}}, False),
        ({"stream_options": {"include_usage": "yes"}}, False),
        ({"stream_options": {"include_usage": True}}, True),
    ],
)
def test_client_wants_usage_only_when_include_usage_is_true(
    body: dict[str, Any], expected: bool
) -> None:
    assert client_wants_usage(body) is expected


def test_client_wants_usage_rejects_stream_options_that_is_not_an_object() -> None:
    with pytest.raises(RequestError) as info:
        client_wants_usage({"stream_options": [True]})

    assert info.value.status == 400
    assert info.value.param == "stream_options"


# for_target


def test_for_target_replaces_the_model_and_keeps_unknown_fields() -> None:
    body = {"model": "support-summary", "messages": [], "brand_new_param": {"x": [1, 2]}}

    sent = orjson.loads(for_target(body, "gpt-4o-mini", stream_usage=False))

    assert sent == {"model": "gpt-4o-mini", "messages": [], "brand_new_param": {"x": [1, 2]}}


def test_for_target_without_stream_usage_leaves_stream_options_alone() -> None:
    body = {"model": "r", "stream": True}

    sent = orjson.loads(for_target(body, "m", stream_usage=False))

    assert "stream_options" not in sent


def test_for_target_with_stream_usage_asks_for_usage() -> None:
    sent = orjson.loads(for_target({"model": "r", "stream": True}, "m", stream_usage=True))

    assert sent["stream_options"] == {"include_usage": True}


def test_for_target_with_stream_usage_keeps_other_stream_options_keys() -> None:
    body = {"model": "r", "stream_options": {"include_usage": False, "chunk_hint": 7}}

    sent = orjson.loads(for_target(body, "m", stream_usage=True))

    assert sent["stream_options"] == {"include_usage": True, "chunk_hint": 7}


def test_for_target_with_stream_usage_handles_null_stream_options() -> None:
    sent = orjson.loads(for_target({"model": "r", "stream_options": None}, "m", stream_usage=True))

    assert sent["stream_options"] == {"include_usage": True}
