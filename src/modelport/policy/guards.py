"""Input guards: what leaves for a provider, and what never does.

Before a route's call, its deny rules (``config.guards``) refuse a request whose text breaks
one: 400 ``content_blocked``, with a message that names the kind of rule and never echoes
the text. Then the kinds it masks are replaced, in every text of the request (messages,
prompt, input), by placeholders such as ``[EMAIL_1]``: the same value gets the same
placeholder within a request, and the values stay in this request's memory only, never in
the ledger, a log or the store. With ``restore: true`` the placeholders in the answer are
replaced by the values again, in a whole answer or in a stream as it passes (a placeholder
split across events is held back until it is whole).

Detectors: e-mail addresses, phone numbers, payment card numbers (Luhn-checked), IBANs
(checked with ISO 13616's mod-97) and secret-looking strings (API keys, bearer tokens,
AWS access keys, GitHub tokens).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from typing import Any

import orjson

from modelport.config.guards import GuardSettings
from modelport.core.operation import Operation
from modelport.errors import ContentBlocked
from modelport.observability.masking import luhn

# Each detector is written to be cheap on ordinary prose (masking a 4 KB prompt with all of
# them on has a 0.2 ms budget): a literal prefilter before a pattern (no "@", no e-mail),
# patterns that start with a literal or a character class (Python's engine skips ahead on
# those, where a leading look-behind would be tried at every position), and one scan for
# digit runs that serves card and phone numbers both.
_KEY = re.compile(r"(?:sk|pk|rk|mpk|mpt)[-_][A-Za-z0-9_\-]{12,}")
_BEARER = re.compile(r"[Bb][Ee][Aa][Rr][Ee][Rr]\s+[A-Za-z0-9._~+/\-]{8,}=*")
_AWS = re.compile(r"AKIA[0-9A-Z]{16}")
_GITHUB = re.compile(r"gh[pousr]_[A-Za-z0-9]{36,}")
_IBAN = re.compile(r"[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]){11,30}")
_DIGITS = re.compile(r"[+\d][\d ().\-]{8,}\d")
_LOCAL = re.compile(r"[A-Za-z0-9._%+\-]{1,64}\Z")
_DOMAIN = re.compile(r"[A-Za-z0-9.\-]+\.[A-Za-z]{2,}")
_PLACEHOLDER = re.compile(r"\[(EMAIL|PHONE|CARD|IBAN|SECRET)_(\d+)\]")
_NAMES = ("EMAIL", "PHONE", "CARD", "IBAN", "SECRET")
Span = tuple[int, int]


def _may_start(tail: str) -> bool:
    """Whether text after a ``[`` may be the start of a placeholder still to come."""
    name, underscore, number = tail.partition("_")
    if not underscore:
        return any(n.startswith(name) for n in _NAMES)
    return name in _NAMES and (number == "" or (number.isdecimal() and len(number) < 7))


def _word_edge(text: str, start: int, end: int) -> bool:
    return (start == 0 or not text[start - 1].isalnum()) and \
        (end == len(text) or not text[end].isalnum())


def _secrets(text: str) -> list[Span]:
    spans = [m.span() for m in _KEY.finditer(text) if _word_edge(text, *m.span())]
    if "earer" in text or "EARER" in text:
        spans += [m.span() for m in _BEARER.finditer(text)]
    if "AKIA" in text:
        spans += [m.span() for m in _AWS.finditer(text)]
    if "gh" in text:
        spans += [m.span() for m in _GITHUB.finditer(text)]
    return spans


def _emails(text: str) -> list[Span]:
    spans = []
    at = text.find("@")
    while at != -1:
        local = _LOCAL.search(text, max(0, at - 64), at)
        domain = _DOMAIN.match(text, at + 1)
        if local is not None and domain is not None:
            spans.append((local.start(), domain.end()))
        at = text.find("@", at + 1)
    return spans


def _numbers(text: str) -> list[tuple[Span, str]]:
    """Digit runs, each a card (13 to 19 digits that pass Luhn) or a phone number."""
    found = []
    for match in _DIGITS.finditer(text):
        start, end = match.span()
        if (start and (text[start - 1].isalnum() or text[start - 1] == "+")) or \
                (end < len(text) and text[end].isalnum()):
            continue
        run = match.group(0)
        digits = re.sub(r"\D", "", run)
        if 13 <= len(digits) <= 19 and luhn(digits) and not any(c in run for c in "()."):
            found.append(((start, end), "card"))
        else:
            found.append(((start, end), "phone"))
    return found


def _ibans(text: str) -> list[Span]:
    return [m.span() for m in _IBAN.finditer(text)
            if _word_edge(text, *m.span()) and _iban_ok(m.group(0))]


def _iban_ok(text: str) -> bool:
    compact = text.replace(" ", "")
    moved = compact[4:] + compact[:4]
    digits = "".join(str(int(c, 36)) for c in moved)
    return int(digits) % 97 == 1


def _spans(text: str, kinds: tuple[str, ...]) -> list[tuple[Span, str]]:
    """What to mask, by kind, without overlaps: earlier kinds win (a key before a number,
    a card before a phone number)."""
    found: list[tuple[Span, str]] = []
    numbers = _numbers(text) if "card" in kinds or "phone" in kinds else []
    if "secret" in kinds:
        found += [(s, "secret") for s in _secrets(text)]
    if "card" in kinds:
        found += [(s, k) for s, k in numbers if k == "card"]
    if "iban" in kinds:
        found += [(s, "iban") for s in _ibans(text)]
    if "email" in kinds and "@" in text:
        found += [(s, "email") for s in _emails(text)]
    if "phone" in kinds:
        found += [(s, k) for s, k in numbers if k == "phone"]
    kept: list[tuple[Span, str]] = []
    taken: list[Span] = []
    for span, kind in found:  # in priority order
        if all(span[1] <= a or span[0] >= b for a, b in taken):
            taken.append(span)
            kept.append((span, kind))
    return sorted(kept)


class Masking:
    """One request's masking: its placeholders and the values behind them."""

    __slots__ = ("_by_value", "_kinds", "counts", "values")

    def __init__(self, kinds: tuple[str, ...]) -> None:
        self._kinds = kinds
        self.values: dict[str, str] = {}  # placeholder -> value
        self._by_value: dict[str, str] = {}
        self.counts: Counter[str] = Counter()  # values masked, by kind

    def text(self, text: str) -> str:
        spans = _spans(text, self._kinds)
        if not spans:
            return text
        out, last = [], 0
        for (start, end), kind in spans:
            out.append(text[last:start])
            out.append(self._placeholder(text[start:end], kind))
            last = end
        out.append(text[last:])
        return "".join(out)

    def _placeholder(self, value: str, kind: str) -> str:
        placeholder = self._by_value.get(value)
        if placeholder is None:
            self.counts[kind] += 1
            placeholder = f"[{kind.upper()}_{self.counts[kind]}]"
            self._by_value[value] = placeholder
            self.values[placeholder] = value
        return placeholder

    def restore(self, text: str) -> str:
        if "[" not in text:
            return text
        return _PLACEHOLDER.sub(lambda m: self.values.get(m.group(0), m.group(0)), text)


def _texts(operation: Operation, body: dict[str, Any],
           change: Callable[[str], str]) -> dict[str, Any]:
    """The body with ``change`` applied to every text the caller sent."""
    if operation is Operation.CHAT:
        messages = body.get("messages")
        if isinstance(messages, list):
            body = {**body, "messages": [_message(m, change) for m in messages]}
        return body
    key = "prompt" if operation is Operation.COMPLETION else "input"
    value = body.get(key)
    if isinstance(value, str):
        return {**body, key: change(value)}
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return {**body, key: [change(v) for v in value]}
    return body


def _message(message: Any, change: Callable[[str], str]) -> Any:
    if not isinstance(message, dict):
        return message
    content = message.get("content")
    if isinstance(content, str):
        return {**message, "content": change(content)}
    if isinstance(content, list):
        return {**message, "content": [
            {**part, "text": change(part["text"])}
            if isinstance(part, dict) and isinstance(part.get("text"), str) else part
            for part in content]}
    return message


def guard(guards: GuardSettings, operation: Operation, body: dict[str, Any],
          prompt_tokens: Callable[[], int]) -> tuple[dict[str, Any], Masking | None]:
    """The body to send, with what it masked; raises ``ContentBlocked`` for a request a
    deny rule refuses (naming the rule's kind, never the text)."""
    if guards.max_input_tokens is not None and prompt_tokens() > guards.max_input_tokens:
        raise ContentBlocked(f"This request is longer than this route accepts "
                             f"({guards.max_input_tokens} tokens).", "max_input_tokens")
    if guards.deny_regex or guards.deny_keywords:
        broken: list[str] = []

        def look(text: str) -> str:
            if not broken:
                reason = guards.denied(text)
                if reason is not None:
                    broken.append(reason)
            return text

        _texts(operation, body, look)
        if broken:
            raise ContentBlocked(f"This request was blocked by this route's input rules "
                                 f"(a {broken[0]} rule).", broken[0])
    if not guards.mask:
        return body, None
    masking = Masking(guards.mask)
    return _texts(operation, body, masking.text), masking


def masked(guards: GuardSettings, operation: Operation, body: dict[str, Any]) -> dict[str, Any]:
    """The body with the kinds the route masks replaced (no deny rules applied)."""
    return _texts(operation, body, Masking(guards.mask).text) if guards.mask else body


def restore_reply(body: bytes, operation: Operation, masking: Masking) -> bytes:
    """A whole answer with its placeholders restored (its texts only)."""
    document = orjson.loads(body)
    for choice in document.get("choices") or () if isinstance(document, dict) else ():
        if not isinstance(choice, dict):
            continue
        if operation is Operation.CHAT and isinstance(choice.get("message"), dict):
            message = choice["message"]
            if isinstance(message.get("content"), str):
                message["content"] = masking.restore(message["content"])
        elif isinstance(choice.get("text"), str):
            choice["text"] = masking.restore(choice["text"])
    return orjson.dumps(document)


class StreamRestorer:
    """Placeholders restored in a stream's text deltas as they pass; a tail that may be
    the start of a placeholder waits for the next delta."""

    __slots__ = ("_held", "_masking", "_operation")

    def __init__(self, masking: Masking, operation: Operation) -> None:
        self._masking = masking
        self._operation = operation
        self._held: dict[int, str] = {}

    def _release(self, index: int, text: str, final: bool) -> str:
        text = self._held.pop(index, "") + text
        cut = len(text)
        if not final:
            start = text.rfind("[")
            if start != -1 and _may_start(text[start + 1:]):
                cut = start
        if cut < len(text):
            self._held[index] = text[cut:]
        return self._masking.restore(text[:cut])

    def pass_on(self, event: bytes) -> bytes:
        """A data event with its texts restored (``[DONE]`` is the relay's: it sends
        ``flush()`` before it)."""
        if not event.startswith(b"data: {"):
            return event
        try:
            chunk = orjson.loads(event[6:])
        except orjson.JSONDecodeError:
            return event
        changed = False
        for choice in chunk.get("choices") or () if isinstance(chunk, dict) else ():
            holder = choice.get("delta") if self._operation is Operation.CHAT else choice
            key = "content" if self._operation is Operation.CHAT else "text"
            if isinstance(holder, dict) and isinstance(holder.get(key), str):
                final = choice.get("finish_reason") is not None
                holder[key] = self._release(int(choice.get("index") or 0), holder[key], final)
                changed = True
        return b"data: " + orjson.dumps(chunk) + b"\n\n" if changed else event

    def flush(self) -> bytes:
        """What is still held, as one last delta (a stream that ended mid-placeholder)."""
        if not self._held:
            return b""
        key = "content" if self._operation is Operation.CHAT else "text"
        choices = []
        for index, text in sorted(self._held.items()):
            restored = self._masking.restore(text)
            choices.append({"index": index, "delta": {key: restored}, "finish_reason": None}
                           if self._operation is Operation.CHAT else
                           {"index": index, "text": restored, "finish_reason": None})
        self._held.clear()
        return b"data: " + orjson.dumps({"object": "chat.completion.chunk",
                                         "choices": choices}) + b"\n\n"
