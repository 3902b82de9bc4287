"""Output contracts over HTTP with the official OpenAI SDK: an answer that breaks its route's
contract repaired by asking again (the repair message quotes the problem, as the fake
provider saw it), one that never complies sent to the fallback route and then refused with
502 invalid_output, labels, lengths and patterns, a request's own response_format, streams
validated before release or ending with a verdict, and the verdict in the ledger, the
metrics and x-modelport-validation."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest

from modelport.config import load_settings
from modelport.errors import ConfigError
from tests.fakes.upstream import FakeUpstream, Reply
from tests.fakes.upstream import chat_answer as answer
from tests.gateway import InProcessGateway, write_config
from tests.gateway import ledger_row as _ledger_row

SCHEMA = {"type": "object", "required": ["sentiment", "score"], "additionalProperties": False,
          "properties": {"sentiment": {"enum": ["positive", "neutral", "negative"]},
                         "score": {"type": "number", "minimum": 0, "maximum": 1}}}


def stream_of(*pieces: str) -> Reply:
    return Reply(stream_chunks=list(pieces))


@pytest.fixture
def gateway(tmp_path: Path, upstream: FakeUpstream, sqlite_url: str
            ) -> Iterator[InProcessGateway]:
    config = {
        "store": {"url": sqlite_url, "flush_interval_s": 0.05},
        "providers": {"p": {"kind": "openai", "base_url": upstream.base_url}},
        "routes": {
            "classify": {"targets": [{"provider": "p", "model": "m"}],
                         "output": {"json_schema": SCHEMA, "repair_attempts": 1},
                         "fallback_routes": ["classify-big"]},
            "classify-big": {"targets": [{"provider": "p", "model": "big"}]},
            "label": {"targets": [{"provider": "p", "model": "m"}],
                      "output": {"labels": ["billing", "bug", "other"], "repair_attempts": 0}},
            "short": {"targets": [{"provider": "p", "model": "m"}],
                      "output": {"max_chars": 10, "regex": "[A-Z][a-z ]*\\.?",
                                 "repair_attempts": 0}},
            "final": {"targets": [{"provider": "p", "model": "m"}],
                      "output": {"labels": ["yes", "no"]}, "stream_validation": "final"},
            "free": {"targets": [{"provider": "p", "model": "m"}]},
        },
    }
    path = write_config(tmp_path / "modelport.yaml", config)
    running = InProcessGateway(load_settings(path, {})).start()
    yield running
    running.stop()


def client(gw: InProcessGateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.url}/v1", api_key="unused", max_retries=0)


def ask(gw: InProcessGateway, route: str, **extra: Any) -> Any:
    return client(gw).chat.completions.with_raw_response.create(
        model=route, messages=[{"role": "user", "content": "The app crashed again."}],
        **extra)


def ledger_row(gw: InProcessGateway, request_id: str) -> dict[str, Any]:
    return _ledger_row(gw.settings.store.url, request_id)


def test_an_invalid_answer_is_repaired_by_asking_again(
    gateway: InProcessGateway, upstream: FakeUpstream
) -> None:
    upstream.enqueue(answer('{"sentiment": "angry", "score": 2}'),
                     answer('{"sentiment": "negative", "score": 0.9}'))
    raw = ask(gateway, "classify")
    assert raw.headers["x-modelport-validation"] == "repaired"
    assert orjson.loads(raw.parse().choices[0].message.content) == {
        "sentiment": "negative", "score": 0.9}
    repair = upstream.requests[-1].body["messages"]
    assert repair[-2] == {"role": "assistant", "content": '{"sentiment": "angry", "score": 2}'}
    assert repair[-1]["role"] == "user"
    assert "does not match the JSON Schema" in repair[-1]["content"]
    assert "sentiment" in repair[-1]["content"] and "score" in repair[-1]["content"]
    row = ledger_row(gateway, raw.headers["x-request-id"])
    assert row["validation"] == "repaired"
    assert (row["prompt_tokens"], row["completion_tokens"]) == (20, 10)  # both calls counted
    metrics = httpx.get(f"{gateway.url}/metrics").text
    assert 'modelport_validations_total{outcome="repaired",route="classify"} 1.0' in metrics


def test_a_valid_answer_passes_and_a_route_without_a_contract_says_skipped(
    gateway: InProcessGateway, upstream: FakeUpstream
) -> None:
    upstream.enqueue(answer('```json\n{"sentiment": "neutral", "score": 0.5}\n```'))
    raw = ask(gateway, "classify")
    assert raw.headers["x-modelport-validation"] == "passed"
    assert len(upstream.requests) == 1
    assert ask(gateway, "free").headers["x-modelport-validation"] == "skipped"


def test_one_that_never_complies_goes_to_the_fallback_then_fails_with_502(
    gateway: InProcessGateway, upstream: FakeUpstream
) -> None:
    upstream.enqueue(answer("not json"), answer("still not json"),
                     answer('{"sentiment": "positive", "score": 0.1}', model="big"))
    raw = ask(gateway, "classify")
    assert raw.headers["x-modelport-validation"] == "repaired"
    assert raw.headers["x-modelport-target"] == "p/big"
    assert [r.body["model"] for r in upstream.requests] == ["m", "m", "big"]

    upstream.enqueue(answer("nope"), answer("nope"), answer("nope", model="big"))
    with pytest.raises(openai.APIStatusError) as info:
        ask(gateway, "classify")
    assert info.value.status_code == 502
    error = info.value.body
    assert isinstance(error, dict) and error["code"] == "invalid_output"
    assert "not valid JSON" in error["message"]
    row = ledger_row(gateway, info.value.response.headers["x-request-id"])
    assert (row["status"], row["validation"]) == (502, "failed")


def test_labels_lengths_and_patterns(gateway: InProcessGateway, upstream: FakeUpstream) -> None:
    upstream.enqueue(answer("  Billing \n"), answer("a refund"))
    assert ask(gateway, "label").headers["x-modelport-validation"] == "passed"
    with pytest.raises(openai.APIStatusError) as info:
        ask(gateway, "label")
    assert "exactly one of: billing, bug, other" in str(info.value.body)
    upstream.enqueue(answer("Yes."), answer("This is far too long."), answer("lower."))
    assert ask(gateway, "short").headers["x-modelport-validation"] == "passed"
    for expected in ("at most 10", "regular expression"):
        with pytest.raises(openai.APIStatusError) as info:
            ask(gateway, "short")
        assert expected in str(info.value.body)


def test_a_requests_own_response_format_is_held_too(
    gateway: InProcessGateway, upstream: FakeUpstream
) -> None:
    wanted = {"type": "json_schema", "json_schema": {"name": "x", "schema": {
        "type": "object", "required": ["city"], "properties": {"city": {"type": "string"}}}}}
    upstream.enqueue(answer('{"town": "Oslo"}'), answer('{"city": "Oslo"}'))
    raw = ask(gateway, "free", response_format=wanted)
    assert raw.headers["x-modelport-validation"] == "repaired"
    assert upstream.requests[0].body["response_format"] == wanted  # passed on as well
    upstream.enqueue(answer("[1, 2]"), answer('{"a": 1}'))
    raw = ask(gateway, "free", response_format={"type": "json_object"})
    assert raw.headers["x-modelport-validation"] == "repaired"
    with pytest.raises(openai.BadRequestError) as bad:
        ask(gateway, "free", response_format={"type": "json_schema",
                                              "json_schema": {"schema": {"type": "nosuch"}}})
    assert bad.value.body["param"] == "response_format"  # type: ignore[index]


def test_a_stream_is_validated_before_it_is_released(
    gateway: InProcessGateway, upstream: FakeUpstream
) -> None:
    upstream.enqueue(answer("not json"), answer('{"sentiment": "neutral", "score": 0}'))
    with client(gateway).chat.completions.with_streaming_response.create(
            model="classify", stream=True,
            messages=[{"role": "user", "content": "hi"}]) as response:
        assert response.headers["x-modelport-validation"] == "repaired"
        text = "".join(chunk.choices[0].delta.content or "" for chunk in response.parse()
                       if chunk.choices)
    assert orjson.loads(text) == {"sentiment": "neutral", "score": 0}
    assert all(r.body.get("stream") is not True for r in upstream.requests)


def test_a_final_mode_stream_ends_with_its_verdict(
    gateway: InProcessGateway, upstream: FakeUpstream
) -> None:
    for pieces, verdict in ((["y", "es"], "passed"), (["may", "be"], "failed")):
        upstream.enqueue(stream_of(*pieces))
        with httpx.stream("POST", f"{gateway.url}/v1/chat/completions", json={
                "model": "final", "stream": True,
                "messages": [{"role": "user", "content": "?"}]}) as response:
            assert response.headers["x-modelport-validation"] == "final"
            events = [line for line in response.iter_lines() if line.startswith("data: ")]
        assert events[-1] == "data: [DONE]"
        last = orjson.loads(events[-2].removeprefix("data: "))
        assert last["object"] == "modelport.validation" and last["validation"] == verdict
        row = ledger_row(gateway, response.headers["x-request-id"])
        assert row["validation"] == verdict


def test_a_bad_schema_or_regex_in_the_config_names_its_key_path(tmp_path: Path) -> None:
    path = write_config(tmp_path / "bad.yaml", {
        "providers": {"p": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1"}},
        "routes": {"r": {"targets": [{"provider": "p", "model": "m"}],
                         "output": {"json_schema": {"type": "nosuch"}, "regex": "(["}}}})
    with pytest.raises(ConfigError) as info:
        load_settings(path, {})
    problems = "\n".join(info.value.problems)
    assert "routes.r.output.json_schema: not a valid JSON Schema" in problems
    assert "routes.r.output.regex: not a valid regular expression" in problems
    write_config(path, {
        "providers": {"p": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1"}},
        "routes": {"e": {"targets": [{"provider": "p", "model": "m"}], "output": {}}}})
    with pytest.raises(ConfigError) as info:
        load_settings(path, {})
    assert "routes.e.output" in info.value.problems[0]
    assert "at least one of" in info.value.problems[0]
