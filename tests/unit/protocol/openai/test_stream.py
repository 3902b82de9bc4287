"""UsageTap: recording usage from a stream and hiding the usage chunk the client did not ask for."""

from __future__ import annotations

import orjson

from modelport.core.usage import Usage
from modelport.protocol.openai.stream import UsageTap

CONTENT = (
    b'data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,'
    b'"delta":{"content":"Hi"}}],"usage":null}\n\n'
)
USAGE_ONLY = (
    b'data: {"id":"c1","object":"chat.completion.chunk","choices":[],'
    b'"usage":{"prompt_tokens":12,"completion_tokens":5,"total_tokens":17}}\n\n'
)
DONE = b"data: [DONE]\n\n"


def test_usage_chunk_records_usage() -> None:
    tap = UsageTap(strip_usage_chunk=False)

    tap.forward(USAGE_ONLY)

    assert tap.usage == Usage(prompt_tokens=12, completion_tokens=5)


def test_usage_only_chunk_is_hidden_when_stripping() -> None:
    tap = UsageTap(strip_usage_chunk=True)

    assert tap.forward(USAGE_ONLY) is False
    assert tap.usage == Usage(prompt_tokens=12, completion_tokens=5)


def test_usage_only_chunk_is_forwarded_when_the_client_asked_for_usage() -> None:
    tap = UsageTap(strip_usage_chunk=False)

    assert tap.forward(USAGE_ONLY) is True


def test_ordinary_chunk_with_null_usage_is_forwarded_and_records_nothing() -> None:
    tap = UsageTap(strip_usage_chunk=True)

    assert tap.forward(CONTENT) is True
    assert tap.usage is None


def test_done_is_forwarded() -> None:
    tap = UsageTap(strip_usage_chunk=True)

    assert tap.forward(DONE) is True
    assert tap.usage is None


def test_usage_with_spaced_json_is_recognised() -> None:
    event = b'data: {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4}}\n\n'
    tap = UsageTap(strip_usage_chunk=True)

    assert tap.forward(event) is False
    assert tap.usage == Usage(prompt_tokens=3, completion_tokens=4)


def test_chunk_with_choices_and_usage_is_kept_even_when_stripping() -> None:
    # Some providers put usage on the last content chunk: the content must still arrive.
    event = (
        b'data: {"choices":[{"index":0,"delta":{"content":"!"}}],'
        b'"usage":{"prompt_tokens":1,"completion_tokens":2}}\n\n'
    )
    tap = UsageTap(strip_usage_chunk=True)

    assert tap.forward(event) is True
    assert tap.usage == Usage(prompt_tokens=1, completion_tokens=2)


def test_usage_marker_inside_broken_json_is_forwarded_untouched() -> None:
    tap = UsageTap(strip_usage_chunk=True)

    assert tap.forward(b'data: {"usage":{"prompt_tokens":1\n\n') is True
    assert tap.usage is None


def test_malformed_usage_object_is_forwarded_and_not_recorded() -> None:
    event = b'data: {"choices":[],"usage":{"prompt_tokens":"many"}}\n\n'
    tap = UsageTap(strip_usage_chunk=True)

    assert tap.forward(event) is True
    assert tap.usage is None


def test_the_last_usage_seen_wins() -> None:
    tap = UsageTap(strip_usage_chunk=False)
    first = orjson.dumps({"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1}})
    second = orjson.dumps({"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 8}})

    tap.forward(b"data: " + first + b"\n\n")
    tap.forward(b"data: " + second + b"\n\n")

    assert tap.usage == Usage(prompt_tokens=9, completion_tokens=8)


def test_a_stream_through_the_tap_reaches_the_client_without_the_usage_chunk() -> None:
    tap = UsageTap(strip_usage_chunk=True)
    stream = [CONTENT, CONTENT, USAGE_ONLY, DONE]

    seen = [event for event in stream if tap.forward(event)]

    assert seen == [CONTENT, CONTENT, DONE]
    assert tap.usage == Usage(prompt_tokens=12, completion_tokens=5)
