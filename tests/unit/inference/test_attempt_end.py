"""An attempt's end: whatever way a request ends (answered, refused, failed over, timed out,
cut by the provider, cancelled by the client), every admission slot, breaker verdict, limit
slot and budget reservation it held is let go exactly once.

The proxy runs for real here (route table, attempt loop, relay, access policy, limiter,
budget book, admission gates and breakers), over scripted providers; the gates and breakers
are counted, the limiter and the budget book are read back.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator
from types import MappingProxyType
from typing import Any

import orjson
import pytest

from modelport.admission.gate import Gate
from modelport.config.settings import (
    ProviderSettings,
    RouteSettings,
    Secret,
    ServerSettings,
    Settings,
    StoreSettings,
    TargetSettings,
)
from modelport.core.context import RequestContext
from modelport.core.operation import Operation
from modelport.errors import RateLimited, UpstreamServerError
from modelport.inference.proxy import ProxyService
from modelport.inference.relay import StreamRelay
from modelport.policy.access import AccessPolicy
from modelport.policy.budgets import Budget, BudgetBook
from modelport.policy.keys import KeyRing, Principal
from modelport.policy.limits import Limiter, Limits
from modelport.policy.tokens import TokenSigner
from modelport.providers.base import UpstreamReply
from modelport.routing.breaker import CircuitBreaker
from modelport.routing.table import RouteTable

ANSWER = {"choices": [{"message": {"content": "hi"}}],
          "usage": {"prompt_tokens": 3, "completion_tokens": 2}}
CHUNK = b'data: {"choices":[{"index":0,"delta":{"content":"Hi"}}]}\n\n'
USAGE = b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}\n\n'
DONE = b"data: [DONE]\n\n"
COST = (3 * 1000 + 2 * 2000) / 1e6


class Stream:
    """An UpstreamStream of scripted chunks: a chunk, an exception to raise, or a pause."""

    def __init__(self, steps: list[Any]) -> None:
        self._steps = steps
        self.closed = 0

    async def chunks(self) -> AsyncIterator[bytes]:
        for step in self._steps:
            if isinstance(step, BaseException):
                raise step
            if isinstance(step, float):
                await asyncio.sleep(step)
                continue
            yield step

    async def aclose(self) -> None:
        self.closed += 1


class Scripted:
    """A provider that answers each call with the next step of its script."""

    def __init__(self, name: str, steps: list[Any]) -> None:
        self.name = name
        self.steps = steps
        self.calls = 0

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def _next(self) -> Any:
        self.calls += 1
        step = self.steps.pop(0)
        if isinstance(step, float):
            await asyncio.sleep(step)
            step = self.steps.pop(0)
        if isinstance(step, BaseException):
            raise step
        return step

    async def send(self, operation: Operation, body: bytes) -> UpstreamReply:
        result: UpstreamReply = await self._next()
        return result

    async def open_stream(self, operation: Operation, body: bytes) -> Any:
        return await self._next()


def ok_reply() -> UpstreamReply:
    return UpstreamReply(200, orjson.dumps(ANSWER))


class Counted:
    """Counts, per gate and breaker, what was let go: slots released, verdicts given."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.slots: Counter[int] = Counter()
        self.verdicts: Counter[tuple[int, str]] = Counter()
        release = Gate._release

        def counted_release(gate: Gate, acquired_at: float, *, record: bool,
                            background: bool = False) -> None:
            self.slots[id(gate)] += 1
            release(gate, acquired_at, record=record, background=background)

        monkeypatch.setattr(Gate, "_release", counted_release)
        for name in ("record_success", "record_failure", "release_probe_without_result"):
            original = getattr(CircuitBreaker, name)

            def counted(breaker: CircuitBreaker, _name: str = name, _f: Any = original) -> None:
                self.verdicts[(id(breaker), _name)] += 1
                _f(breaker)

            monkeypatch.setattr(CircuitBreaker, name, counted)


class Rig:
    def __init__(self, monkeypatch: pytest.MonkeyPatch, a: list[Any], b: list[Any],
                 **route: Any) -> None:
        self.counted = Counted(monkeypatch)
        # a prompt token costs a tenth of a cent, a completion token two
        targets = tuple(TargetSettings(provider=p, model="m", max_concurrency=4,
                                       input_per_mtok=1000.0, output_per_mtok=2000.0)
                        for p in ("a", "b"))
        settings = Settings(
            config_version="v", server=ServerSettings(), store=StoreSettings(),
            providers=MappingProxyType({p: ProviderSettings(name=p, kind="openai",
                                                            base_url=f"http://{p}")
                                        for p in ("a", "b")}),
            routes=MappingProxyType({"r": RouteSettings(name="r", targets=targets,
                                                   **{"retries": 1, **route})}),
        )
        self.providers = {"a": Scripted("a", a), "b": Scripted("b", b)}
        self.routes = RouteTable(settings, self.providers)
        clock = time.time
        self.limiter, self.budgets = Limiter(clock), BudgetBook(clock)
        self.access = AccessPolicy(KeyRing(clock), TokenSigner(b"t" * 32), self.limiter,
                                   self.budgets, settings.routes, auth_required=True,
                                   admin_key=Secret("a" * 20), clock=clock)
        self.budget = Budget(limit_usd=10.0, period="day")
        self.principal = Principal(
            key_id="k", name="k", environment="prod", routes=None, limits=Limits(),
            budget=self.budget, scopes=(("key:k", Limits(max_concurrency=1)),))
        self.proxy = ProxyService(self.routes, self.access)
        self.ctx = RequestContext(request_id="req-1", method="POST", path="/v1/chat/completions")

    async def call(self, **body: Any) -> UpstreamReply | StreamRelay:
        request = {"model": "r", "messages": [{"role": "user", "content": "hi"}],
                   "max_tokens": 5, **body}
        answer = await self.proxy.call(Operation.CHAT, request, orjson.dumps(request),
                                       self.ctx, self.principal)
        return answer.result

    def target(self, label: str) -> Any:
        return next(t for t in self.routes.get("r").targets if t.provider.name == label)

    def verdicts(self, label: str) -> dict[str, int]:
        breaker = id(self.target(label).breaker)
        return {name: n for (b, name), n in self.counted.verdicts.items() if b == breaker}

    def assert_all_let_go(self, *, spent: float, slots: dict[str, int]) -> None:
        """No slot, limit or reservation still held, each let go once; ``spent`` settled."""
        for label, count in slots.items():
            gate = self.target(label).gate
            assert gate.in_flight == 0
            assert self.counted.slots[id(gate)] == count, label
        assert self.budgets.reserved("k") == pytest.approx(0.0)
        assert self.budgets.spent("k", self.budget) == pytest.approx(spent)
        # the key's one concurrent request was given back once: one fits again, two do not
        second = self.limiter.admit(self.principal.scopes, 0)
        with pytest.raises(RateLimited):
            self.limiter.admit(self.principal.scopes, 0)
        second.release()


async def test_an_answer_releases_its_slot_and_verdict_once_and_charges_its_usage(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rig = Rig(monkeypatch, [ok_reply()], [])
    reply = await rig.call()
    assert isinstance(reply, UpstreamReply) and reply.status == 200
    assert rig.verdicts("a") == {"record_success": 1}
    rig.assert_all_let_go(spent=COST, slots={"a": 1})


async def test_a_fallback_ends_the_failed_attempt_and_the_answering_one_each_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rig = Rig(monkeypatch, [UpstreamServerError("a is down")], [ok_reply()])
    reply = await rig.call()
    assert isinstance(reply, UpstreamReply) and reply.status == 200
    assert rig.verdicts("a") == {"record_failure": 1}
    assert rig.verdicts("b") == {"record_success": 1}
    assert [a.target for a in rig.ctx.attempts] == ["a/m", "b/m"]
    rig.assert_all_let_go(spent=COST, slots={"a": 1, "b": 1})


async def test_a_timeout_on_every_target_gives_everything_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rig = Rig(monkeypatch, [1.0, ok_reply()], [1.0, ok_reply()], timeout_s=0.05)
    with pytest.raises(Exception) as info:
        await rig.call()
    assert getattr(info.value, "code", None) == "upstream_timeout"
    assert rig.verdicts("a") == {"record_failure": 1}
    assert rig.verdicts("b") == {"record_failure": 1}
    rig.assert_all_let_go(spent=0.0, slots={"a": 1, "b": 1})


async def test_a_passed_back_client_error_is_a_healthy_target_and_costs_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    refusal = UpstreamReply(400, b'{"error":{"message":"bad","code":null}}')
    rig = Rig(monkeypatch, [refusal], [])
    reply = await rig.call()
    assert isinstance(reply, UpstreamReply) and reply.status == 400
    assert rig.verdicts("a") == {"record_success": 1}
    rig.assert_all_let_go(spent=0.0, slots={"a": 1})


async def test_a_cancelled_call_abandons_its_attempt_without_a_verdict(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rig = Rig(monkeypatch, [5.0, ok_reply()], [])
    task = asyncio.ensure_future(rig.call())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert rig.verdicts("a") == {"release_probe_without_result": 1}
    rig.assert_all_let_go(spent=0.0, slots={"a": 1})


async def stream_of(rig: Rig) -> StreamRelay:
    relay = await rig.call(stream=True)
    assert isinstance(relay, StreamRelay)
    return relay


async def test_a_stream_that_runs_to_its_end_succeeds_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rig = Rig(monkeypatch, [Stream([CHUNK, USAGE, DONE])], [])
    relay = await stream_of(rig)
    assert rig.counted.slots[id(rig.target("a").gate)] == 0  # held while the stream runs
    out = [event async for event in relay.events()]
    await relay.aclose()  # the server closes it again after the end: nothing more happens
    assert out[-1] == DONE
    assert rig.verdicts("a") == {"record_success": 1}
    rig.assert_all_let_go(spent=COST, slots={"a": 1})


async def test_a_stream_cut_by_the_provider_fails_once_and_charges_what_was_served(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rig = Rig(monkeypatch, [Stream([CHUNK, UpstreamServerError("connection lost")])], [])
    relay = await stream_of(rig)
    out = [event async for event in relay.events()]
    await relay.aclose()
    assert b"upstream_server_error" in out[-1]
    assert rig.verdicts("a") == {"record_failure": 1}
    assert rig.budgets.spent("k", rig.budget) > 0  # no usage arrived: the estimate stands
    rig.assert_all_let_go(spent=rig.budgets.spent("k", rig.budget), slots={"a": 1})


async def test_a_stalled_stream_times_out_and_fails_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rig = Rig(monkeypatch, [Stream([CHUNK, 5.0, DONE])], [], stream_idle_timeout_s=0.05)
    relay = await stream_of(rig)
    out = [event async for event in relay.events()]
    assert b"upstream_timeout" in out[-1]
    assert rig.verdicts("a") == {"record_failure": 1}
    rig.assert_all_let_go(spent=rig.budgets.spent("k", rig.budget), slots={"a": 1})


async def test_a_stream_the_client_leaves_is_abandoned_once_without_a_verdict(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    upstream = Stream([CHUNK, CHUNK, 5.0, DONE])
    rig = Rig(monkeypatch, [upstream], [])
    relay = await stream_of(rig)
    events = relay.events()
    assert isinstance(events, AsyncGenerator)
    assert await anext(events) == CHUNK
    await events.aclose()  # the client went away after the first event
    await relay.aclose()
    assert rig.verdicts("a") == {"release_probe_without_result": 1}
    assert upstream.closed >= 1
    rig.assert_all_let_go(spent=rig.budgets.spent("k", rig.budget), slots={"a": 1})


async def test_a_stream_never_started_is_abandoned_when_the_server_closes_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rig = Rig(monkeypatch, [Stream([CHUNK, DONE])], [])
    relay = await stream_of(rig)
    await relay.aclose()
    await relay.aclose()
    assert rig.verdicts("a") == {"release_probe_without_result": 1}
    rig.assert_all_let_go(spent=rig.budgets.spent("k", rig.budget), slots={"a": 1})
