"""Input guards: each detector, placeholders and their restoring (whole and streamed, a
placeholder split across events included), and deny rules that never echo the text."""

from __future__ import annotations

import orjson
import pytest

from modelport.config.guards import compile_guards
from modelport.core.operation import Operation
from modelport.errors import ContentBlocked
from modelport.policy.guards import Masking, StreamRestorer, guard, restore_reply

ALL = ("email", "phone", "card", "iban", "secret")
TEXT = ("Mail ana@example.com or call +44 20 7946 0958; card 4111 1111 1111 1111, "
        "IBAN GB82 WEST 1234 5698 7654 32, key sk-proj-abcdefghijklmnop123, "
        "again ana@example.com")


def test_each_kind_is_masked_and_the_same_value_keeps_its_placeholder() -> None:
    masking = Masking(ALL)
    masked = masking.text(TEXT)
    assert masked == ("Mail [EMAIL_1] or call [PHONE_1]; card [CARD_1], IBAN [IBAN_1], key "
                      "[SECRET_1], again [EMAIL_1]")
    assert dict(masking.counts) == {"email": 1, "phone": 1, "card": 1, "iban": 1,
                                    "secret": 1}
    assert masking.restore(masked) == TEXT


def test_a_number_that_fails_luhn_is_no_card() -> None:
    assert Masking(("card",)).text("4111 1111 1111 1112") == "4111 1111 1111 1112"


def test_only_the_kinds_asked_for_are_masked() -> None:
    masking = Masking(("email",))
    assert "+44 20 7946 0958" in masking.text(TEXT) and "[EMAIL_1]" in masking.text(TEXT)


def test_an_iban_with_a_wrong_check_digit_is_left_alone() -> None:
    assert Masking(("iban",)).text("GB83 WEST 1234 5698 7654 32") == \
        "GB83 WEST 1234 5698 7654 32"


def test_bodies_are_masked_in_every_text_the_caller_sent() -> None:
    guards = compile_guards(["email"], True, [], [], None, "g", [])
    body = {"model": "r", "messages": [
        {"role": "user", "content": "to bo@x.io"},
        {"role": "user", "content": [{"type": "text", "text": "cc bo@x.io"},
                                      {"type": "image_url", "image_url": {"url": "u"}}]}]}
    sent, masking = guard(guards, Operation.CHAT, body, lambda: 10)
    assert sent["messages"][0]["content"] == "to [EMAIL_1]"
    assert sent["messages"][1]["content"][0]["text"] == "cc [EMAIL_1]"
    assert body["messages"][0]["content"] == "to bo@x.io"  # the caller's body is unchanged
    assert masking is not None
    reply = orjson.dumps({"choices": [{"message": {"content": "Sent to [EMAIL_1]."}}]})
    assert b"Sent to bo@x.io." in restore_reply(reply, Operation.CHAT, masking)
    sent, _ = guard(guards, Operation.EMBEDDING, {"input": ["a@b.co", "x"]}, lambda: 1)
    assert sent["input"] == ["[EMAIL_1]", "x"]


def test_a_stream_is_restored_even_when_a_placeholder_is_split() -> None:
    masking = Masking(("email",))
    masking.text("bo@x.io")
    restorer = StreamRestorer(masking, Operation.CHAT)

    def event(text: str) -> bytes:
        return b"data: " + orjson.dumps({"choices": [{"index": 0, "delta": {
            "content": text}, "finish_reason": None}]}) + b"\n\n"

    out = [restorer.pass_on(event(t)) for t in ("Write to [EMA", "IL_1] now [", "no")]
    texts = [orjson.loads(o[6:])["choices"][0]["delta"]["content"] for o in out]
    assert texts == ["Write to ", "bo@x.io now ", "[no"]
    restorer.pass_on(event("tail [EMAIL_"))
    assert b"[EMAIL_" in restorer.flush()  # a stream that ends mid-placeholder keeps it


def test_deny_rules_refuse_without_echoing_the_text() -> None:
    problems: list[str] = []
    guards = compile_guards([], False, [r"\bDROP\s+TABLE\b"], ["password", "wire money"],
                            100, "g", problems)
    assert problems == []
    for text, rule in (("please WIRE MONEY now", "keyword"), ("x; DROP  TABLE users", "regex")):
        with pytest.raises(ContentBlocked) as info:
            guard(guards, Operation.CHAT, {"messages": [{"role": "user", "content": text}]},
                  lambda: 10)
        assert info.value.rule == rule and text not in info.value.message
        assert info.value.status == 400 and info.value.code == "content_blocked"
    with pytest.raises(ContentBlocked) as info:
        guard(guards, Operation.CHAT, {"messages": []}, lambda: 101)
    assert info.value.rule == "max_input_tokens"
    assert guard(guards, Operation.CHAT, {"messages": [
        {"role": "user", "content": "passwords"}]}, lambda: 1)[1] is None  # whole words


def test_a_bad_deny_regex_is_a_problem_with_its_key_path() -> None:
    problems: list[str] = []
    compile_guards([], False, ["ok", "(["], [], None, "routes.r.guards", problems)
    assert problems and problems[0].startswith("routes.r.guards.deny.regex[1]: not a valid")
