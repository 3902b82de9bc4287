"""Proxying an OpenAI-style call through a route, streaming or not.

The body is parsed once by the caller; here the route is resolved, the caller's access to
it checked and admitted (limits, budget), and the attempt loop tries the route's targets in
its strategy's order, with retries and fallbacks by error class, then the route's
``fallback_routes``. Only the usage object of the reply is read; the reply's bytes are
passed back untouched. Tokens and cost are settled against limits and budget once known.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any

import orjson

from modelport.config.catalogue import CatalogueModel
from modelport.config.guards import GuardSettings
from modelport.config.output import OutputContract
from modelport.config.settings import ReviewSettings
from modelport.config.tools import ToolPolicy
from modelport.core.context import RequestContext
from modelport.core.operation import Operation
from modelport.core.usage import Usage
from modelport.errors import (
    ContentBlocked,
    ContextTooLong,
    InvalidOutput,
    ModelportError,
    ModelRetired,
    Overloaded,
    UnsupportedOperation,
)
from modelport.inference.attempts_loop import AttemptLoop
from modelport.inference.prompts import apply_prompt
from modelport.inference.relay import StreamRelay
from modelport.inference.reviews import ReviewQueue, held_reply
from modelport.inference.shadow import ShadowRunner
from modelport.inference.switched import switched_reply
from modelport.inference.validation import (
    SKIPPED,
    VALIDATION_HEADER,
    StreamVerdict,
    ToolCalls,
    as_stream,
    contracts_of,
    permitted_tools,
    problem_of,
    repair_body,
)
from modelport.observability.metrics import Metrics
from modelport.observability.tracing import Tracing, end_span
from modelport.policy.access import AccessPolicy, Ticket
from modelport.policy.guards import Masking, StreamRestorer, guard, masked, restore_reply
from modelport.policy.keys import Principal
from modelport.policy.switches import Switch, Switchboard
from modelport.protocol.openai.request import (
    client_wants_usage,
    completion_estimate,
    estimate_tokens,
    for_target,
    open_completion,
    requested_route,
    wants_stream,
)
from modelport.providers.base import UpstreamReply, UpstreamStream
from modelport.routing.table import Route, RouteTable, Target

_CAPTURE_LIMIT = 64 * 1024
COST_HEADER = b"x-modelport-cost-usd"
ATTEMPTS_HEADER = b"x-modelport-attempts"
PROMPT_HEADER = b"x-modelport-prompt-version"
_ATTEMPTS = tuple((ATTEMPTS_HEADER, str(n).encode()) for n in range(16))  # made once


class Answer:
    """What the use case answers with: a whole reply, or a stream that has begun, and the
    response headers it sets (the limits' ``x-ratelimit-*``, the cost, the attempts)."""

    __slots__ = ("headers", "result")

    def __init__(self, result: UpstreamReply | StreamRelay,
                 headers: list[tuple[bytes, bytes]]) -> None:
        self.result = result
        self.headers = headers


class ProxyService:
    def __init__(
        self, routes: RouteTable, access: AccessPolicy, metrics: Metrics | None = None,
        rng: random.Random | None = None, *, tracing: Tracing | None = None,
        switches: Switchboard | None = None,
        models: Mapping[str, CatalogueModel] | None = None,
        shadows: ShadowRunner | None = None,
        config_version: str = "",
        reviews: ReviewQueue | None = None,
    ) -> None:
        self._reviews = reviews
        self._shadows = shadows
        self._config_version = config_version  # the one these routes belong to
        self._switches = switches or Switchboard()
        self._models = models or {}  # the models catalogue, by id
        self._routes = routes
        self._access = access
        self._metrics = metrics
        self._rng = rng or random.Random()
        self._tracing = tracing

    def _admit(
        self,
        operation: Operation,
        body: dict[str, Any],
        route: Route,
        principal: Principal | None,
        ctx: RequestContext,
    ) -> _Admitted:
        """Authorise (403), follow a kill switch, put the route's prompt before the
        request, then take limit slots and reserve budget (429). The route that serves (a
        switch may name another), the ticket, or the kill switch that answers instead."""
        if principal is not None:  # open mode: everyone may call every route
            self._access.authorize(principal, route.settings)
        if self._switches.any_off:
            switch = self._switches.for_request(
                route.name, principal.key_id if principal is not None else None)
            if switch is not None:
                if switch.behaviour != "fallback":
                    return route, None, switch
                route = self._fallback_of(switch, principal)
                ctx.target = route.targets[0].label
        prompt = route.settings.prompt
        if prompt is not None:
            apply_prompt(prompt, operation, body)
            ctx.prompt_version = prompt.version
        ctx.environment = route.settings.environment
        embedding = operation is Operation.EMBEDDING
        ticket = self._access.admit(
            principal, route.settings, route.targets[0].price,
            lambda: estimate_tokens(body, embedding=embedding),
            open_completion=0 if embedding or principal is None or principal.budget is None
            else open_completion(body),  # read only under a budget
        )
        if ticket is not None and ticket.completion_cap is not None:
            body["max_tokens"] = ticket.completion_cap  # what the budget can pay
        return route, ticket, None

    def _traced_admit(
        self,
        tracing: Tracing,
        operation: Operation,
        body: dict[str, Any],
        route: Route,
        principal: Principal | None,
        ctx: RequestContext,
    ) -> _Admitted:
        span = tracing.span("modelport.admission", {"modelport.route": route.name})
        try:
            admitted = self._admit(operation, body, route, principal, ctx)
        except BaseException as exc:
            end_span(span, exc)
            raise
        end_span(span)
        return admitted

    async def call(
        self,
        operation: Operation,
        body: dict[str, Any],
        raw: bytes,
        ctx: RequestContext,
        principal: Principal | None = None,
        *,
        timeout_s: float | None = None,
        priority: int = 1,
        client_headers: Sequence[tuple[bytes, bytes]] = (),
        idempotency_key: str | None = None,
    ) -> Answer:
        """Serve one request: a whole reply, or a relay for a stream that has begun, with
        the headers to answer with. An error raised carries them too. ``client_headers``
        are read only to keep a caller on one side of a sticky canary; ``idempotency_key``
        goes to providers that honour one (a batch line's, the same on every try)."""
        ctx.operation = operation
        stream = wants_stream(body)
        route = self._routes.get(requested_route(body))
        ctx.route = route.settings.name
        ctx.target = route.targets[0].label
        if stream and not operation.streamable:
            raise UnsupportedOperation(
                f"Streaming is not available for {operation.value} requests.", param="stream"
            )
        strip_usage = stream and not client_wants_usage(body)  # may raise: before admitting
        contracts: tuple[OutputContract | ToolCalls, ...] = ()
        calls = None
        if route.checks_answers or "response_format" in body or (  # else none can apply
                principal is not None and principal.tools is not None):
            body, contracts, calls = _contracted(route, operation, body, principal)
        guards, masking = route.settings.guards, None
        if guards is not None:
            body, masking = await self._guard_input(guards, route, operation, body, ctx)
        restore = masking if guards is not None and guards.restore else None
        served_by, ticket, switch = (
            self._admit(operation, body, route, principal, ctx) if self._tracing is None
            else self._traced_admit(self._tracing, operation, body, route, principal, ctx))
        if switch is not None:  # a kill switch answers or refuses
            return Answer(switched_reply(switch, operation, body, ctx, stream=stream), [])
        if served_by is not route:  # a switch sent it to another route
            contracts = (*contracts_of(served_by.settings, operation, body),
                         *(() if calls is None else (calls,)))
            route = served_by
        review = route.settings.review if self._reviews is not None and \
            operation is not Operation.EMBEDDING else None
        draft = review is not None and review.mode == "always"
        buffered = stream and (draft or (
            bool(contracts) and route.settings.stream_validation == "buffer"))
        if buffered:  # fetched whole, checked, then sent as the stream that was asked for
            body = {k: v for k, v in body.items() if k not in ("stream", "stream_options")}
        prompt = route.settings.prompt
        if route.settings.capture:
            ctx.request_body = (raw if masking is None else orjson.dumps(body))[:_CAPTURE_LIMIT]
        budget = route.settings.deadline_s if timeout_s is None else min(
            timeout_s, route.settings.deadline_s)
        request = _Request(operation, body, ctx, ticket, stream and not buffered, strip_usage,
                           priority, tenant=principal.key_id if principal is not None else "",
                           deadline=time.monotonic() + budget, headers=client_headers,
                           principal=principal, idempotency_key=idempotency_key)
        headers = [] if ticket is None else [
            (k.lower().encode(), v.encode()) for k, v in ticket.headers().items()]
        if prompt is not None:
            headers.append((PROMPT_HEADER, prompt.version.encode()))
        try:
            result = await self._serve(route, request, {route.settings.name})
            if contracts:
                result = await self._kept_to(contracts, route, request, result, headers,
                                             review)
            else:
                headers.append(SKIPPED)
        except ModelportError as exc:
            exc.headers = {**{k.decode(): v.decode() for k, v in headers},
                           ATTEMPTS_HEADER.decode(): str(len(ctx.attempts)), **exc.headers}
            raise
        finally:
            if request.ticket is not None:  # no attempt answered: nothing was served
                request.give_back_ticket()
        attempts = len(ctx.attempts)
        headers.append(_ATTEMPTS[attempts] if attempts < len(_ATTEMPTS)
                       else (ATTEMPTS_HEADER, str(attempts).encode()))
        served = request.served
        if served is not None and served.settings.catalogue is not None:
            headers.extend(served.settings.catalogue.lifecycle_headers(time.time()))
        if isinstance(result, UpstreamReply):
            if ctx.cost_usd is not None:
                headers.append((COST_HEADER, f"{ctx.cost_usd:.6f}".encode()))
            if route.settings.capture:
                ctx.response_body = result.body[:_CAPTURE_LIMIT]
            if result.status == 200 and (review is not None or route.shadow is not None
                                         or restore is not None or buffered):
                result = await self._deliver(result, route, request, review,
                                             restore=restore, stream=buffered,
                                             with_usage=not strip_usage)
        elif restore is not None and restore.values:
            result.restorer = StreamRestorer(restore, operation)
        return Answer(result, headers)

    async def _guard_input(
        self, guards: GuardSettings, route: Route, operation: Operation,
        body: dict[str, Any], ctx: RequestContext,
    ) -> tuple[dict[str, Any], Masking | None]:
        """The route's input guards, before admission and any call: the body to send and
        what was masked; 400 ``content_blocked``, held for a person first when the route
        reviews what its guards block."""
        try:
            return _guarded(guards, operation, body, ctx)
        except ContentBlocked as exc:
            if guards.review_blocked and self._reviews is not None:
                kept = masked(guards, operation, body)  # what it masks stays masked
                await self._reviews.hold_refused(route.settings, ctx, kept,
                                                 f"content_blocked: {exc.rule}")
            raise

    async def _deliver(self, reply: UpstreamReply, route: Route, request: _Request,
                       review: ReviewSettings | None, *, restore: Masking | None,
                       stream: bool, with_usage: bool) -> UpstreamReply:
        """A whole answer on its way out: held for review on a draft-only route (202),
        copied to the shadow target and the review sample, the masked values put back,
        and sent as a stream when the client asked for one."""
        ctx, operation, body = request.ctx, request.operation, request.body
        if review is not None and self._reviews is not None:
            if review.mode == "always":
                return held_reply(await self._reviews.hold(route.settings, ctx, body, reply,
                                                           "always"))
            if review.mode == "sample" and self._rng.random() * 100 < review.percent:
                self._reviews.sample(route.settings, ctx, body, reply)
        if route.shadow is not None and self._shadows is not None:
            self._shadows.maybe(route, operation, body, reply, ctx, self._config_version)
        if restore is not None and restore.values:
            reply = UpstreamReply(reply.status, restore_reply(reply.body, operation, restore),
                                  reply.content_type)
        if stream:
            ctx.stream = True
            reply = as_stream(reply, operation, ctx, str(body.get("model", "")),
                              with_usage=with_usage)
        return reply

    async def _kept_to(
        self, contracts: tuple[OutputContract | ToolCalls, ...], route: Route,
        request: _Request,
        result: UpstreamReply | StreamRelay, headers: list[tuple[bytes, bytes]],
        review: ReviewSettings | None = None,
    ) -> UpstreamReply | StreamRelay:
        """The answer, held to its contracts: checked, repaired, or replaced by a fallback
        route's; 502 ``invalid_output`` when none keeps them. A stream in ``final`` mode
        is checked as it passes (its verdict is its last event)."""
        operation, ctx = request.operation, request.ctx
        if isinstance(result, StreamRelay):
            result.verdict = StreamVerdict(contracts, operation, ctx)
            headers.append((VALIDATION_HEADER, b"final"))
            return result
        if not result.ok:  # a client error passed back: there is no answer to check
            headers.append(SKIPPED)
            return result
        problem = problem_of(contracts, operation, result)
        if problem is None:
            ctx.validation = "passed"
            headers.append((VALIDATION_HEADER, b"passed"))
            return result
        body = request.body
        for _ in range(max(c.repair_attempts for c in contracts)):
            repair = repair_body(body, operation, result, problem)
            if repair is None:
                break
            retried = await self._again(route, request, repair)
            if retried is None:
                break
            body, result = repair, retried
            problem = problem_of(contracts, operation, result)
            if problem is None:
                break
        for name in route.settings.fallback_routes if problem is not None else ():
            if name in self._routes:
                other = await self._again(self._routes.get(name), request, request.body)
                if other is not None and problem_of(contracts, operation, other) is None:
                    result, problem = other, None
                    break
        if problem is not None:
            ctx.validation = "failed"
            if review is not None and review.mode == "on_failure" and self._reviews is not None:
                headers.append((VALIDATION_HEADER, b"failed"))  # held for a person: 202
                return held_reply(await self._reviews.hold(
                    route.settings, ctx, request.body, result, f"invalid_output: {problem}"))
            raise InvalidOutput(f"No answer kept this route's output contract: {problem}.")
        ctx.validation = "repaired"
        headers.append((VALIDATION_HEADER, b"repaired"))
        return result

    async def _again(self, route: Route, request: _Request, body: dict[str, Any]
                     ) -> UpstreamReply | None:
        """One more answer for a contract (a repair, or a fallback route's), admitted and
        charged like any call, its usage and cost added to the request's; None when it
        cannot be had (refused, failed, or not an answer)."""
        ctx = request.ctx
        usage, cost = ctx.usage, ctx.cost_usd
        try:
            ticket = self._access.admit(
                request.principal, route.settings, route.targets[0].price,
                lambda: estimate_tokens(body, embedding=False),
                open_completion=open_completion(body))
        except ModelportError:
            return None
        again = _Request(request.operation, body, ctx, ticket, False, False, request.priority,
                         tenant=request.tenant, deadline=request.deadline,
                         headers=request.headers, principal=request.principal)
        try:
            reply = await self._serve(route, again, {route.name})
        except ModelportError:
            return None
        finally:
            again.give_back_ticket()
            if usage is not None and ctx.usage is not None and ctx.usage is not usage:
                ctx.usage = Usage(usage.prompt_tokens + ctx.usage.prompt_tokens,
                                  usage.completion_tokens + ctx.usage.completion_tokens)
            if cost is not None and ctx.cost_usd is not cost:
                ctx.cost_usd = cost + (ctx.cost_usd or 0.0)
        return reply if isinstance(reply, UpstreamReply) and reply.ok else None

    def _fallback_of(self, switch: Switch, principal: Principal | None) -> Route:
        """The route a switch sends requests to: the operator's choice, so the caller's key
        need not list it; one hop only (a fallback that is off too refuses)."""
        name = switch.fallback_route
        if name is None or name not in self._routes:
            raise switch.refusal()
        if self._switches.for_request(name, principal.key_id if principal else None):
            raise switch.refusal()
        return self._routes.get(name)

    async def _serve(
        self, route: Route, request: _Request, visited: set[str]
    ) -> UpstreamReply | StreamRelay:
        ctx = request.ctx
        prompt = 0
        if route.windows:
            prompt = estimate_tokens(request.body,
                                     embedding=request.operation is Operation.EMBEDDING)[0]
        loop = AttemptLoop(route, ctx, rng=self._rng, deadline=request.deadline,
                           prompt_tokens=prompt, priority=request.priority,
                           tenant=request.tenant, tracing=self._tracing,
                           switches=self._switches,
                           caller=None if route.canary is None else request.caller(route))
        if request.stream:
            opened = await loop.run(request.open_stream, stream=True)
            if opened is not None:  # the attempt's end, with the stream it opened
                result = opened.result
                request.served = opened.target
                opened.take_ticket(request.hand_over_ticket())
                if isinstance(result, UpstreamReply):
                    opened.refuse()  # a client error, passed back: the target is healthy
                    return result
                ctx.stream = True
                return StreamRelay(
                    result, ctx, opened, strip_usage_chunk=request.strip_usage,
                    price=opened.target.price,
                    idle_timeout_s=route.settings.stream_idle_timeout_s,
                    deadline=_loop_time(request.deadline),
                )
        else:
            end = await loop.run(request.send)
            if end is not None:  # the attempt's end, with the reply it answered with
                reply = end.result
                request.served = end.target
                if request.ticket is not None:
                    end.take_ticket(request.hand_over_ticket())
                try:
                    if 200 <= reply.status < 300:  # reply.ok, without the call
                        usage = _settle_reply(ctx, reply, end.target, request)
                        end.succeed(usage, ctx.cost_usd)
                    else:
                        end.refuse()  # a client error, passed back: the target is healthy
                finally:
                    if end.ended is None:  # the lines above did not end it
                        end.abandon()
                return reply
        return await self._fall_back(route, request, visited, loop)

    async def _fall_back(
        self, route: Route, request: _Request, visited: set[str], loop: AttemptLoop
    ) -> UpstreamReply | StreamRelay:
        policy_rule = route.settings.fallback_on.get("content_policy", "fail")
        if not loop.policy_refusal or policy_rule == "fallback_routes":
            for name in route.settings.fallback_routes:
                if name not in visited:
                    visited.add(name)
                    return await self._serve(self._routes.get(name), request, visited)
        if loop.last_reply is not None:
            return loop.last_reply
        if loop.last_error is not None:
            raise loop.last_error
        if loop.switched is not None and not request.ctx.attempts:  # switched off, every one
            return await self._switched(loop.switched, request, visited)
        if loop.retired is not None and not request.ctx.attempts:  # every model retired
            raise _retired(loop.retired, self._models)
        if loop.too_long and not request.ctx.attempts:
            raise ContextTooLong(
                "The prompt is longer than the context window of every target of this route.",
                param="messages")
        raise _unavailable(route)


    async def _switched(
        self, switch: Switch, request: _Request, visited: set[str]
    ) -> UpstreamReply | StreamRelay:
        """A route whose every target a provider or model switch took out."""
        name = switch.fallback_route
        if (switch.behaviour == "fallback" and name is not None and name in self._routes
                and name not in visited):
            visited.add(name)
            return await self._serve(self._routes.get(name), request, visited)
        return switched_reply(switch, request.operation, request.body, request.ctx,
                              stream=request.stream)


# What admission decided: the route that serves (a switch may name another), the ticket,
# or the kill switch that answers instead (a tuple: made for every request).
_Admitted = tuple[Route, Ticket | None, Switch | None]


class _Request:
    """What every attempt of one request needs, whichever route serves it."""

    __slots__ = ("body", "ctx", "deadline", "headers", "idempotency_key", "operation",
                 "principal", "priority", "served", "stream", "strip_usage", "tenant", "ticket")

    def __init__(
        self, operation: Operation, body: dict[str, Any], ctx: RequestContext,
        ticket: Ticket | None, stream: bool, strip_usage: bool, priority: int, *,
        tenant: str, deadline: float, headers: Sequence[tuple[bytes, bytes]] = (),
        principal: Principal | None = None, idempotency_key: str | None = None,
    ) -> None:
        self.idempotency_key = idempotency_key  # sent to a provider that honours one
        self.principal = principal  # whose limits and budget a contract's repair is charged to
        self.headers = headers  # the client's, read only for a sticky canary
        self.operation = operation
        self.body = body
        self.ctx = ctx
        self.ticket = ticket
        self.stream = stream
        self.strip_usage = strip_usage
        self.priority = priority
        self.tenant = tenant
        self.deadline = deadline
        self.served: Target | None = None  # the target whose answer goes back

    def caller(self, route: Route) -> str | None:
        """Who is asking, for a sticky canary: the key's id, or a header's value."""
        sticky = route.canary.settings.sticky if route.canary is not None else None
        if sticky is None:
            return None
        if sticky == "key":
            return self.tenant or None
        name = route.canary.settings.sticky_header  # type: ignore[union-attr]
        return next((v.decode("latin-1") for k, v in self.headers if k == name), None)

    def hand_over_ticket(self) -> Ticket | None:
        """The ticket, to the attempt that answers: from then on its end settles it."""
        ticket, self.ticket = self.ticket, None
        return ticket

    def give_back_ticket(self) -> None:
        """Nothing was served (no attempt answered): limits and budget get everything back."""
        ticket, self.ticket = self.ticket, None
        if ticket is not None:
            ticket.finish(None, None)

    # plain functions returning the provider's coroutine: one frame less to resume each time
    # the provider call wakes up
    def send(self, target: Target) -> Awaitable[UpstreamReply]:
        payload = for_target(self.body, target.settings.model, stream_usage=False)
        if self.idempotency_key is None:
            return target.provider.send(self.operation, payload)
        return target.provider.send(self.operation, payload,
                                    idempotency_key=self.idempotency_key)

    def open_stream(self, target: Target) -> Awaitable[UpstreamStream | UpstreamReply]:
        payload = for_target(self.body, target.settings.model, stream_usage=True)
        return target.provider.open_stream(self.operation, payload)


def _settle_reply(
    ctx: RequestContext, reply: UpstreamReply, target: Target, request: _Request
) -> Usage:
    """Usage and cost of an answer; an answer that reports no usage is charged what it
    is estimated to have used (the prompt as admitted, the answer's text), and the ledger
    row says so, rather than served for free."""
    usage = reply.usage()
    if usage is None:
        embedding = request.operation is Operation.EMBEDDING
        usage = Usage(prompt_tokens=estimate_tokens(request.body, embedding=embedding)[0],
                      completion_tokens=0 if embedding else completion_estimate(reply.document))
        ctx.usage_estimated = True
    ctx.usage = usage
    ctx.cost_usd = target.price.cost(usage)
    return usage


def _contracted(route: Route, operation: Operation, body: dict[str, Any],
                principal: Principal | None
                ) -> tuple[dict[str, Any], tuple[OutputContract | ToolCalls, ...],
                           ToolCalls | None]:
    """Before admission and any call: the answer's contracts (400 for an unusable
    ``response_format``) and the tools under the route's and key's permissions (403, or
    stripped). The body to send, the contracts, the tool check."""
    contracts: tuple[OutputContract | ToolCalls, ...] = contracts_of(
        route.settings, operation, body)
    calls = None
    if operation is Operation.CHAT and (route.settings.tools is not None or (
            principal is not None and principal.tools is not None)):
        body, calls = _tools(route.settings.tools, principal, body)
        contracts = (*contracts, calls)
    return body, contracts, calls


def _tools(route: ToolPolicy | None, principal: Principal | None, body: dict[str, Any]
           ) -> tuple[dict[str, Any], ToolCalls]:
    """The tools the request may declare under its route's and key's permissions."""
    policies = [p for p in (route, principal.tools if principal is not None else None)
                if p is not None]
    return permitted_tools(body, policies, strip=route is not None and route.strip)


def _guarded(guards: GuardSettings, operation: Operation, body: dict[str, Any],
             ctx: RequestContext) -> tuple[dict[str, Any], Masking | None]:
    """The body after a route's input guards, and what they masked, noted on the request
    (kinds and counts, never values); ``ContentBlocked`` noted, then raised."""
    embedding = operation is Operation.EMBEDDING
    try:
        guarded, masking = guard(guards, operation, body,
                                 lambda: estimate_tokens(body, embedding=embedding)[0])
    except ContentBlocked as exc:
        ctx.guards = [("blocked", exc.rule, 1)]
        raise
    if masking is not None and masking.counts:
        ctx.guards = [("masked", kind, n) for kind, n in sorted(masking.counts.items())]
    return guarded, masking


def _retired(entry: CatalogueModel, models: Mapping[str, CatalogueModel]) -> ModelRetired:
    successor = models.get(entry.successor) if entry.successor else None
    use = "" if successor is None else f" Its successor is '{successor.id}'."
    return ModelRetired(f"The model '{entry.id}' of this route is retired.{use}",
                        param="model")


def _unavailable(route: Route) -> ModelportError:
    wait = min((t.breaker.seconds_until_retry() for t in route.targets), default=1.0)
    return Overloaded(
        "No target of this route can take the request now.",
        headers={"Retry-After": str(max(1, math.ceil(wait)))},
    )


def _loop_time(deadline: float) -> float:
    """A ``time.monotonic`` deadline on the event loop's clock (they may differ)."""
    return asyncio.get_running_loop().time() + (deadline - time.monotonic())
