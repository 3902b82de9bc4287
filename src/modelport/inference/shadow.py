"""Shadow traffic: a share of a route's requests copied to another target, to compare.

After the caller's whole answer is on its way (a task that starts once the request's own
task yields), the same request (as the served target got it: the route's prompt included)
goes to the route's shadow target. Its answer is never returned and never delays the
caller; it counts against no key's limits or budget, only against the shadow's own budget
(per server, per day or month), beyond which shadows are skipped. Each one is a ledger row
(``shadow_of`` the served request's id; its status, latency, tokens, cost, and whether its
text matched the served answer's exactly) and a count in ``modelport_shadow_requests_total``
by outcome (``match``, ``differ``, ``error``, ``over_budget``). Streams are not shadowed.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from typing import Any

from modelport.core.context import RequestContext
from modelport.core.operation import Operation
from modelport.errors import ModelportError
from modelport.observability.metrics import Metrics
from modelport.policy.budgets import period_start
from modelport.protocol.openai.request import for_target
from modelport.providers.base import UpstreamReply
from modelport.routing.table import Route, Target
from modelport.store.ledger import LedgerRecord

log = logging.getLogger("modelport.shadow")


class _Budget:
    """What a route's shadows spent in the current period, on this server."""

    __slots__ = ("limit_usd", "period", "spent", "start")

    def __init__(self, limit_usd: float, period: str) -> None:
        self.limit_usd, self.period = limit_usd, period
        self.spent, self.start = 0.0, 0.0

    def room(self, now: float) -> bool:
        start = period_start(self.period, now)  # type: ignore[arg-type]
        if start != self.start:
            self.start, self.spent = start, 0.0
        return self.spent < self.limit_usd


class ShadowRunner:
    def __init__(self, record: Callable[[LedgerRecord], None], metrics: Metrics,
                 rng: random.Random | None = None) -> None:
        self._record = record
        self._metrics = metrics
        self._rng = rng or random.Random()
        self._budgets: dict[str, _Budget] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def maybe(self, route: Route, operation: Operation, body: dict[str, Any],
              served: UpstreamReply, ctx: RequestContext, config_version: str) -> None:
        """Copy this answered request to the route's shadow target, or not; its row names
        the config version that served the request."""
        shadow = route.shadow
        if shadow is None or not served.ok or operation is Operation.EMBEDDING:
            return
        settings = route.settings.shadow
        assert settings is not None
        if self._rng.random() * 100 >= settings.percent:
            return
        budget = self._budgets.get(route.name)
        if budget is None:
            budget = self._budgets[route.name] = _Budget(settings.budget_usd,
                                                         settings.budget_period)
        if not budget.room(time.time()):
            self._count(route.name, shadow.label, "over_budget")
            return
        task = asyncio.get_running_loop().create_task(
            self._run(route.name, shadow, operation, body, served, ctx.request_id, ctx.path,
                      budget, config_version))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, route: str, target: Target, operation: Operation,
                   body: dict[str, Any], served: UpstreamReply, request_id: str, path: str,
                   budget: _Budget, config_version: str) -> None:
        created = time.time()
        started = time.perf_counter()
        status, code, reply = 200, None, None
        try:
            async with asyncio.timeout(min(target.provider_timeout_s, 600.0)):
                reply = await target.provider.send(
                    operation, for_target(body, target.model, stream_usage=False))
            status = reply.status
        except TimeoutError:
            status, code = 504, "upstream_timeout"
        except ModelportError as exc:
            status, code = exc.status, exc.code
        except Exception:  # a shadow must never hurt the server; say so and go on
            log.exception("shadow call failed", extra={"route": route})
            status, code = 500, "internal_error"
        elapsed = time.perf_counter() - started
        usage = reply.usage() if reply is not None and reply.ok else None
        cost = target.price.cost(usage) if usage is not None else None
        budget.spent += cost or 0.0
        match = None
        if reply is not None and reply.ok:
            match = _text(reply) == _text(served)
        outcome = "error" if match is None else "match" if match else "differ"
        self._count(route, target.label, outcome)
        self._record(LedgerRecord(
            request_id=f"{request_id[:120]}.shadow", created_at=created, method="POST",
            path=path, operation=None, route=route, target=target.label, stream=False,
            status=status, error_code=code, latency_ms=elapsed * 1000,
            upstream_ms=elapsed * 1000, overhead_ms=0.0, first_chunk_ms=None,
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
            config_version=config_version, client_disconnected=False,
            request_body=None, response_body=None, cost_usd=cost,
            model_version=target.settings.model_version, shadow_of=request_id,
            shadow_match=match))

    def _count(self, route: str, target: str, outcome: str) -> None:
        self._metrics.shadow_requests.labels(route, target, outcome).inc()

    async def close(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def _text(reply: UpstreamReply) -> str | None:
    """The answer's text: a chat message's content, or a completion's text."""
    document = reply.parsed()
    try:
        choice = document["choices"][0]
        return str(choice["message"]["content"] if "message" in choice else choice["text"])
    except (KeyError, IndexError, TypeError):
        return None
