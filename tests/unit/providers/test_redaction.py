"""A provider's error answer loses every form of the provider key, and keeps its words."""

from __future__ import annotations

import orjson

from modelport.providers.redaction import Redactor

KEY = "sk-proj-Zq81mV0pL2rT9xW4nB6c"
redactor = Redactor([KEY])


def test_the_key_and_any_eight_characters_of_it_go_as_one_stretch() -> None:
    assert redactor.text(f"key {KEY} refused") == "key *** refused"
    assert redactor.text(f"tail {KEY[5:]}!") == "tail ***!"
    assert redactor.text("mid " + KEY[4:14] + " end") == "mid *** end"


def test_masked_and_key_like_tokens_go() -> None:
    assert redactor.text("provided: sk-pro**********W4nB6c.") == "provided: ***"
    assert redactor.text("key ••••••••6c here") == "key *** here"
    assert redactor.text("use key_abcdef123 next") == "use *** next"


def test_ordinary_words_stay() -> None:
    text = "This model's maximum context length is 8192 tokens (param: messages)."
    assert redactor.text(text) == text


def test_an_openai_error_is_rebuilt_from_its_decoded_fields_only() -> None:
    escaped = "".join(f"\\u{ord(c):04x}" for c in KEY)
    body = ('{"error": {"message": "bad ' + escaped + '", "type": "invalid_request_error",'
            ' "param": null, "code": "invalid_api_key", "debug": {"sent": "' + KEY + '"}}}')
    error = orjson.loads(redactor.error_body(body.encode(), 400))["error"]
    assert error == {"message": "bad ***", "type": "invalid_request_error", "param": None,
                     "code": "invalid_api_key"}


def test_text_whose_decoded_form_shows_the_key_is_not_passed_on() -> None:
    for body in (KEY.replace("-", "%2D"), "".join(f"&#{ord(c)};" for c in KEY)):
        error = orjson.loads(redactor.error_body(f"bad key {body}".encode(), 422))["error"]
        assert error["message"] == "The provider rejected the request (HTTP 422)."
        assert error["code"] == "upstream_rejected"


def test_plain_text_without_a_key_is_passed_on() -> None:
    error = orjson.loads(redactor.error_body(b"unprocessable thing", 422))["error"]
    assert error["message"] == "unprocessable thing"


def test_no_secret_means_only_key_like_tokens_go() -> None:
    assert Redactor([]).text("plain words sk-abcdefgh") == "plain words ***"
