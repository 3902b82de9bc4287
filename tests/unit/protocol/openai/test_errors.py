"""error_body and error_event: the one place errors take OpenAI's shape."""

from __future__ import annotations

import orjson

from modelport.errors import RequestError, UnknownRoute, UpstreamTimeout
from modelport.protocol.openai.errors import error_body, error_event
from modelport.protocol.sse import EventSplitter, event_data


def test_error_body_has_exactly_openai_error_fields() -> None:
    body = orjson.loads(error_body(UnknownRoute("gpt-9")))

    assert body == {
        "error": {
            "message": "The model 'gpt-9' does not exist.",
            "type": "invalid_request_error",
            "param": "model",
            "code": "model_not_found",
        }
    }


def test_error_body_renders_a_missing_param_as_null() -> None:
    body = orjson.loads(error_body(UpstreamTimeout("slow")))

    assert body["error"]["param"] is None
    assert body["error"]["code"] == "upstream_timeout"
    assert body["error"]["type"] == "upstream_error"


def test_error_event_is_one_complete_sse_data_event_carrying_the_error_body() -> None:
    exc = RequestError("bad stream", param="stream")

    event = error_event(exc)

    assert event.startswith(b"data: ")
    assert event.endswith(b"\n\n")
    assert EventSplitter().feed(event) == [event]
    assert orjson.loads(event_data(event)) == orjson.loads(error_body(exc))
