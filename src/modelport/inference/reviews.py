"""The review queue: answers a person sees before (or after) they are used.

A route's ``review:`` decides which answers are held (``store.reviews``):

- ``always``: the route is draft-only. The model answers, the answer is kept as a pending
  item, and the caller gets 202 with the item's id; ``GET /v1/reviews/{id}`` says pending,
  approved (with the answer, as the reviewer may have edited it) or rejected.
- ``on_failure``: an answer that broke the route's output contract (after its repairs and
  fallbacks) is held instead of refused with 502; the caller gets 202 the same way.
- ``{sample: PERCENT}``: that share of answers is returned as usual and also queued, for a
  person to read after the fact.

Reviewers decide over ``/admin/reviews`` or in the dashboard. A decision is final (a second
one is 409), feeds the feedback figures (approved as is: accepted; edited; rejected), is
timed (``modelport_review_decision_seconds``), and is posted to the route's webhook, if it
has one, signed with HMAC-SHA256 and retried with backoff.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections.abc import Mapping
from typing import Any

import orjson

from modelport.config.settings import ReviewSettings, RouteSettings
from modelport.core.context import RequestContext
from modelport.errors import NotFound
from modelport.observability.metrics import Metrics
from modelport.providers.base import UpstreamReply
from modelport.providers.webhook import deliver
from modelport.store.requests import Feedback, RequestStore
from modelport.store.reviews import ReviewRow, ReviewStore

log = logging.getLogger("modelport.reviews")
SIGNATURE_HEADER = "X-Modelport-Signature"
WEBHOOK_TRIES = 5
WEBHOOK_BACKOFF_S = 1.0  # the first wait before trying a failed delivery again; doubles


def review_view(row: ReviewRow, *, full: bool = False) -> dict[str, Any]:
    """An item as its caller sees it (``full``: as a reviewer does, with the request)."""
    view: dict[str, Any] = {
        "object": "review", "id": row.id, "status": row.status, "route": row.route,
        "created_at": row.created_at.isoformat(), "edited": row.edited,
        "answer": orjson.loads(row.answer) if row.status == "approved" or full else None,
        "reason": row.decision_reason if row.status == "rejected" else None,
        "decided_at": row.decided_at.isoformat() if row.decided_at else None,
    }
    if full:
        view.update(request=orjson.loads(row.request), held_because=row.reason,
                    key_id=row.key_id, request_id=row.request_id,
                    model_version=row.model_version, decided_by=row.decided_by,
                    decision_reason=row.decision_reason,
                    original=orjson.loads(row.original) if row.original else None)
    return view


def held_reply(row: ReviewRow) -> UpstreamReply:
    """What the caller of a held answer gets: 202 and where to ask for the decision."""
    return UpstreamReply(202, orjson.dumps({
        "object": "review", "id": row.id, "status": "pending", "route": row.route,
        "poll": f"/v1/reviews/{row.id}"}))


def edited(answer: str, text: str) -> str:
    """The answer document with the reviewer's text as its (first) choice's content: its
    ``text`` for a text completion, its message's content for a chat."""
    document = orjson.loads(answer)
    choices = document.get("choices") if isinstance(document, dict) else None
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        if "text" in choices[0]:
            choices[0]["text"] = text
        else:
            message = choices[0].setdefault("message", {"role": "assistant"})
            message["content"] = text
    return orjson.dumps(document).decode()


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """``t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>." + body>``, as a receiver checks it."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


class ReviewQueue:
    def __init__(self, store: ReviewStore, requests: RequestStore, metrics: Metrics) -> None:
        self.store = store
        self._requests = requests
        self._metrics = metrics
        self._tasks: set[asyncio.Task[None]] = set()

    async def hold(self, route: RouteSettings, ctx: RequestContext, body: Mapping[str, Any],
                   reply: UpstreamReply | None, reason: str) -> ReviewRow:
        """Keep an answer (None: a refused request, with no answer) for a person, in a
        worker thread: the store is written before the caller is told the item's id."""
        return await asyncio.to_thread(
            self.store.hold, route=route.name, key_id=ctx.key_id, request_id=ctx.request_id,
            model_version=ctx.model_version, reason=reason,
            request=orjson.dumps(body).decode(),
            answer="null" if reply is None else reply.body.decode("utf-8", "replace"))

    async def hold_refused(self, route: RouteSettings, ctx: RequestContext,
                           body: Mapping[str, Any], reason: str) -> None:
        """Keep a request the route's input rules refused, for a person to look at; a store
        that cannot keep it is logged, and the refusal stands."""
        try:
            await self.hold(route, ctx, body, None, reason)
        except Exception as exc:
            log.warning("cannot queue a refused request",
                        extra={"route": route.name, "error": type(exc).__name__})

    def sample(self, route: RouteSettings, ctx: RequestContext, body: Mapping[str, Any],
               reply: UpstreamReply) -> None:
        """Queue a copy of an answer that was returned; never delays the caller."""
        async def keep() -> None:
            try:
                await self.hold(route, ctx, body, reply, "sample")
            except Exception as exc:  # a sample lost is logged; the caller was served
                log.warning("cannot queue a sampled answer",
                            extra={"route": route.name, "error": type(exc).__name__})
        self._spawn(keep())

    async def decide(self, review_id: str, *, approve: bool, text: str | None, reason: str,
                     actor: str, client: str | None,
                     routes: Mapping[str, RouteSettings]) -> ReviewRow:
        item = await asyncio.to_thread(self.store.review, review_id)
        if item is None:
            raise NotFound(f"There is no review '{review_id}'.")
        answer = None if text is None or not approve else edited(item.answer, text)
        row = await asyncio.to_thread(self.store.decide, review_id, approve=approve,
                                      answer=answer, reason=reason, actor=actor, client=client)
        waited = (row.decided_at or row.created_at) - row.created_at
        self._metrics.review_decisions.labels(row.route, row.status).observe(
            waited.total_seconds())
        self._spawn(self._feedback(row, text if approve else None))
        route = routes.get(row.route)
        review = route.review if route is not None else None
        if review is not None and review.webhook_url is not None:
            self._spawn(self._post(review, row))
        return row

    async def _feedback(self, row: ReviewRow, correction: str | None) -> None:
        try:
            await asyncio.to_thread(self._requests.add_feedback, Feedback(
                request_id=row.request_id, key_id=row.key_id, route=row.route,
                model_version=row.model_version,
                outcome="rejected" if row.status == "rejected"
                else "edited" if row.edited else "accepted",
                correction=correction, comment=row.decision_reason or None))
        except Exception as exc:
            log.warning("cannot record a review as feedback",
                        extra={"review": row.id, "error": type(exc).__name__})

    async def _post(self, review: ReviewSettings, row: ReviewRow) -> None:
        """The decision to the route's webhook, retried with doubling waits."""
        assert review.webhook_url is not None and review.webhook_secret is not None
        body = orjson.dumps(review_view(row))
        wait = WEBHOOK_BACKOFF_S
        for attempt in range(1, WEBHOOK_TRIES + 1):
            headers = {"Content-Type": "application/json", "X-Modelport-Review": row.id,
                       SIGNATURE_HEADER: signature(review.webhook_secret.reveal(),
                                                   int(time.time()), body)}
            failure = await deliver(review.webhook_url, body, headers)
            if failure is None:
                return
            log.warning("review webhook failed", extra={
                "review": row.id, "route": row.route, "attempt": attempt, "error": failure})
            if attempt < WEBHOOK_TRIES:
                await asyncio.sleep(wait)
                wait *= 2

    async def pending(self) -> None:
        """Pending items and the oldest one's age per route, for a metrics scrape."""
        rows = await asyncio.to_thread(self.store.pending)
        now = time.time()
        self._metrics.reviews_pending.clear()
        self._metrics.review_oldest.clear()
        for route, count, oldest in rows:
            self._metrics.reviews_pending.labels(route).set(count)
            self._metrics.review_oldest.labels(route).set(now - oldest.timestamp())

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
