"""What of a provider's error answer may reach the client: its words, never its credential.

A provider's 4xx answer (a bad parameter, a context-length error) is passed back, but the
provider may quote the key it was sent, whole, partly masked (``sk-proj-****abcd``) or
escaped (JSON's ``\\u`` escapes decode to the key). So the answer is decoded first and then
redacted: an OpenAI-shaped error is rebuilt from its decoded ``message``, ``type``, ``param``
and ``code`` only, each string with every secret, every run of eight or more characters of
a secret, and every token that looks like a key or a masked key replaced by ``***``. A body
that is not JSON is redacted as text, and when its percent- or HTML-decoded form still shows
a piece of a secret, its text is not passed on at all.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote

import orjson

FRAGMENT = 8  # the shortest piece of a secret that is redacted on its own
_KEYLIKE = re.compile(
    r"\b(?:sk|pk|rk|mpk|mpt|key|token)[-_][A-Za-z0-9_\-*.•]{4,}"  # sk-..., key_...
    r"|\S*(?:\*{3,}|•{3,}|x{6,})\S*",  # a masked key: sk-ab****yz, ••••1234, xxxxxxxx
    re.IGNORECASE)
_FIELDS = ("message", "type", "param", "code")


class Redactor:
    __slots__ = ("_fragments", "_secrets")

    def __init__(self, secrets: Iterable[str]) -> None:
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)
        self._fragments = {s[i:i + FRAGMENT] for s in self._secrets
                           for i in range(max(len(s) - FRAGMENT + 1, 1))}

    def text(self, value: str) -> str:
        for secret in self._secrets:
            value = value.replace(secret, "***")
        value = _KEYLIKE.sub("***", value)
        return self._without_fragments(value) if self._fragments else value

    def _without_fragments(self, value: str) -> str:
        """Every stretch of ``value`` covered by pieces of a secret, replaced as one."""
        spans = []
        for fragment in self._fragments:
            start = value.find(fragment)
            while start >= 0:
                spans.append((start, start + FRAGMENT))
                start = value.find(fragment, start + 1)
        if not spans:
            return value
        spans.sort()
        parts, end = [], 0
        for start, stop in spans:
            if start > end:
                parts += [value[end:start], "***"]
            elif not parts:
                parts.append("***")
            end = max(end, stop)
        return "".join(parts) + value[end:]

    def leaks(self, value: str) -> bool:
        return any(fragment in value for fragment in self._fragments)

    def error_body(self, payload: bytes, status: int) -> bytes:
        """The provider's error answer in OpenAI's shape, redacted."""
        try:
            parsed: Any = orjson.loads(payload)
        except orjson.JSONDecodeError:
            parsed = None
        if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
            error = parsed["error"]
            return orjson.dumps({"error": {
                name: self._value(error.get(name)) for name in _FIELDS}})
        text = payload.decode("utf-8", "replace")[:1000]
        decoded = (unquote(text), html.unescape(text))
        if any(self.leaks(form) or _KEYLIKE.search(form) for form in decoded if form != text):
            text = ""
        return orjson.dumps({"error": {
            "message": self.text(text) or f"The provider rejected the request (HTTP {status}).",
            "type": "invalid_request_error",
            "param": None,
            "code": "upstream_rejected",
        }})

    def _value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if value is None or isinstance(value, (int, float, bool)):
            return value
        return self.text(orjson.dumps(value).decode())  # nested: flattened to text
