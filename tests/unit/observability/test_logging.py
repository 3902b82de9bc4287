"""JsonFormatter and redact: one JSON object per line, no known secret ever in it."""

from __future__ import annotations

import io
import logging
import sys

import orjson

from modelport.observability.logging import REDACTED, JsonFormatter, configure_logging, redact

SECRET = "sk-live-9f8e7d6c5b4a"


def make_record(msg: str, *args: object, exc: bool = False, **extra: object) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise RuntimeError(f"upstream said: bad key {SECRET}")
        except RuntimeError:
            exc_info = sys.exc_info()
    logger = logging.getLogger("modelport.test")
    return logger.makeRecord(
        "modelport.test", logging.WARNING, __file__, 1, msg, args, exc_info, extra=extra
    )


def test_formatter_writes_one_json_object_on_one_line() -> None:
    line = JsonFormatter().format(make_record("hello %s", "world"))

    assert "\n" not in line
    entry = orjson.loads(line)
    assert entry["msg"] == "hello world"
    assert entry["level"] == "warning"
    assert entry["logger"] == "modelport.test"
    assert entry["ts"].endswith("Z")


def test_formatter_includes_extra_fields_and_not_logging_internals() -> None:
    entry = orjson.loads(
        JsonFormatter().format(make_record("request", request_id="r-1", status=200))
    )

    assert entry["request_id"] == "r-1"
    assert entry["status"] == 200
    for internal in ("args", "levelno", "pathname", "lineno", "exc_text", "created"):
        assert internal not in entry


def test_formatter_renders_unserialisable_extras_as_text() -> None:
    entry = orjson.loads(JsonFormatter().format(make_record("x", thing=object())))

    assert entry["thing"].startswith("<object object at")


def test_formatter_includes_the_traceback_on_one_line() -> None:
    line = JsonFormatter().format(make_record("failed", exc=True))

    assert "\n" not in line
    entry = orjson.loads(line)
    assert "Traceback" in entry["exc"]
    assert "RuntimeError" in entry["exc"]


def test_secret_in_the_message_is_redacted() -> None:
    line = JsonFormatter([SECRET]).format(make_record("key is %s", SECRET))

    assert SECRET not in line
    assert orjson.loads(line)["msg"] == f"key is {REDACTED}"


def test_secret_in_an_extra_field_is_redacted() -> None:
    line = JsonFormatter([SECRET]).format(
        make_record("request", headers={"Authorization": f"Bearer {SECRET}"})
    )

    assert SECRET not in line
    assert orjson.loads(line)["headers"] == {"Authorization": f"Bearer {REDACTED}"}


def test_secret_in_an_exception_traceback_is_redacted() -> None:
    line = JsonFormatter([SECRET]).format(make_record("failed", exc=True))

    assert SECRET not in line
    assert f"bad key {REDACTED}" in orjson.loads(line)["exc"]


def test_formatter_ignores_empty_secrets() -> None:
    line = JsonFormatter(["", SECRET]).format(make_record("plain text"))

    assert orjson.loads(line)["msg"] == "plain text"


def test_secret_with_a_quote_or_backslash_is_redacted() -> None:
    secret = 'p@ss"wo\\rd'

    line = JsonFormatter([secret]).format(make_record("key %s", secret))

    assert orjson.loads(line)["msg"] == f"key {REDACTED}"


def test_redact_replaces_every_occurrence_of_every_secret() -> None:
    text = f"a={SECRET} b=other-secret c={SECRET}"

    assert redact(text, [SECRET, "other-secret"]) == "a=*** b=*** c=***"


def test_redact_leaves_text_without_secrets_unchanged() -> None:
    assert redact("nothing here", [SECRET]) == "nothing here"


def test_redact_hides_all_of_a_secret_that_contains_another() -> None:
    assert redact("key=abc123-tail", ["abc123", "abc123-tail"]) == "key=***"


def test_configure_logging_sends_records_as_redacted_json_to_the_stream() -> None:
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    stream = io.StringIO()
    try:
        configure_logging("info", secrets=[SECRET], stream=stream)
        logging.getLogger("modelport.any").info("token %s", SECRET, extra={"route": "r"})
        logging.getLogger("modelport.any").debug("below the level")
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved_handlers:
            root.addHandler(handler)
        root.setLevel(saved_level)

    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    entry = orjson.loads(lines[0])
    assert entry["msg"] == "token ***"
    assert entry["route"] == "r"
