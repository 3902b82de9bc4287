"""The V2 inference use case admits through the model's gate and settles what it took."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

import pytest

from modelport.admission.gate import Gate, GateSettings
from modelport.config.settings import LimitSettings, Secret
from modelport.core.context import RequestContext
from modelport.core.operation import Operation
from modelport.errors import Overloaded, RateLimited
from modelport.policy.access import AccessPolicy
from modelport.policy.budgets import BudgetBook
from modelport.policy.keys import KeyRing
from modelport.policy.limits import Limiter
from modelport.policy.tokens import TokenSigner
from modelport.tensors.inference import TensorInference


class SlowTensors:
    """Stands in for the tensor runtime: each inference waits until it is let go."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.go = asyncio.Event()
        self.running = 0

    def get(self, name: str, version: str | None = None) -> tuple[Any, int]:
        return self.model, 1

    async def infer(self, name: str, version: str | None, request: Any
                    ) -> tuple[int, list[Any]]:
        self.running += 1
        await self.go.wait()
        return 1, []


def use_case(gate: GateSettings, limits: LimitSettings | None = None
             ) -> tuple[TensorInference, SlowTensors, Limiter]:
    model = SimpleNamespace(
        name="m", environment="prod", limits=limits or LimitSettings(), gate=Gate(gate),
        source=SimpleNamespace(config=SimpleNamespace(admission_timeout_s=5.0)))
    tensors = SlowTensors(model)
    limiter = Limiter(time.time)
    access = AccessPolicy(KeyRing(), TokenSigner(b"t" * 32), limiter, BudgetBook(time.time),
                          {}, auth_required=False, admin_key=Secret("a" * 20))
    return TensorInference(tensors, access), tensors, limiter  # type: ignore[arg-type]


def ctx() -> RequestContext:
    return RequestContext(request_id="r", method="POST", path="/v2/models/m/infer")


async def test_past_the_gates_concurrency_a_request_is_refused_and_the_first_goes_on() -> None:
    inference, tensors, _ = use_case(GateSettings(max_concurrency=1, max_queue=0))
    first = asyncio.ensure_future(inference.infer(None, tensors.model, None, object(), ctx()))  # type: ignore[arg-type]
    while tensors.running == 0:
        await asyncio.sleep(0)
    with pytest.raises(Overloaded):
        await inference.infer(None, tensors.model, None, object(), ctx())  # type: ignore[arg-type]
    tensors.go.set()
    assert await first == (1, [])
    assert tensors.model.gate.in_flight == 0


async def test_a_waiting_request_is_served_when_the_slot_frees_and_its_wait_is_recorded() -> None:
    inference, tensors, _ = use_case(GateSettings(max_concurrency=1, max_queue=1))
    first = asyncio.ensure_future(inference.infer(None, tensors.model, None, object(), ctx()))  # type: ignore[arg-type]
    while tensors.running == 0:
        await asyncio.sleep(0)
    waiting_ctx = ctx()
    second = asyncio.ensure_future(
        inference.infer(None, tensors.model, None, object(), waiting_ctx))  # type: ignore[arg-type]
    await asyncio.sleep(0.05)
    assert tensors.running == 1 and tensors.model.gate.queued == 1
    tensors.go.set()
    await first
    await second
    assert waiting_ctx.queue_s >= 0.04
    assert (waiting_ctx.operation, waiting_ctx.model_version) == (Operation.INFER, "1")


async def test_the_models_concurrency_limit_is_taken_and_given_back() -> None:
    inference, tensors, _ = use_case(GateSettings(), LimitSettings(max_concurrency=1))
    first = asyncio.ensure_future(inference.infer(None, tensors.model, None, object(), ctx()))  # type: ignore[arg-type]
    while tensors.running == 0:
        await asyncio.sleep(0)
    with pytest.raises(RateLimited):
        await inference.infer(None, tensors.model, None, object(), ctx())  # type: ignore[arg-type]
    tensors.go.set()
    await first
    await inference.infer(None, tensors.model, None, object(), ctx())  # type: ignore[arg-type]
