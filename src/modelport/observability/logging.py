"""Structured JSON log lines, with every known secret redacted from the finished line.

Redaction works on the rendered line, after every field and traceback is in it, so that a
secret cannot slip through a field the formatter did not know about.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable
from typing import Any

import orjson

REDACTED = "***"
_STANDARD_ATTRS = frozenset(vars(logging.makeLogRecord({})).keys()) | {
    "message", "asctime", "color_message"
}


class JsonFormatter(logging.Formatter):
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets = redaction_forms(secrets)

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        line = orjson.dumps(entry, default=str).decode()
        return redact(line, self._secrets)

    def learn(self, secrets: Iterable[str]) -> None:
        """Redact these too (a reloaded config's): the earlier ones stay redacted."""
        self._secrets = redaction_forms((*self._secrets, *secrets))


def learn_secrets(secrets: Iterable[str]) -> None:
    """Teach the JSON handlers in place (``configure_logging``'s) more secrets to redact."""
    wanted = tuple(secrets)
    for handler in logging.getLogger().handlers:
        if isinstance(handler.formatter, JsonFormatter):
            handler.formatter.learn(wanted)


def redaction_forms(secrets: Iterable[str]) -> tuple[str, ...]:
    """Each secret as it may appear in a JSON line (raw and escaped), longest first, so that
    a secret that contains another is hidden whole."""
    forms = set()
    for secret in secrets:
        if secret:
            forms.add(secret)
            forms.add(orjson.dumps(secret).decode()[1:-1])
    return tuple(sorted(forms, key=len, reverse=True))


def redact(text: str, secrets: Iterable[str]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def configure_logging(level: str = "info", secrets: Iterable[str] = (), stream: Any = None) -> None:
    """Send every log record, Modelport's and its libraries', to one JSON handler."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(secrets))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers.clear()
        lg.propagate = True
