"""Recording a finished request: metrics, one structured log line, and a ledger record.

Runs once per request after its last byte was sent (or the client went away). It does no
I/O of its own: the access log and the ledger writer buffer what they are given and write
it out in batches. Captured bodies are masked here (``observability.masking``), off the
path of routes that do not capture. The most recent requests are also remembered in memory
(who made them, which route and model version), so that feedback sent right after an
answer finds its request before the ledger has written it.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import orjson

from modelport.core.context import RequestContext
from modelport.observability.access import AccessLog
from modelport.observability.masking import Masker
from modelport.observability.metrics import UNKNOWN, Metrics
from modelport.store.ledger import LedgerRecord, LedgerWriter

# Requests remembered for feedback until the ledger surely has them (it writes within a
# second or so). Plain tuples of shared strings: the collector stops tracking them, so a full
# index costs no garbage-collection time.
RECENT = 20_000
Answered = tuple[str | None, str | None, str | None]  # key id, route, model version


class _Series:
    """Every metric child one kind of request updates."""

    __slots__ = ("completion_tokens", "cost", "duration", "errors", "first_chunk", "gaps",
                 "overhead", "prompt_tokens", "requests", "upstream")

    def __init__(self, m: Metrics, route: str, target: str, status: str, version: str,
                 environment: str, code: str | None) -> None:
        self.requests = m.requests.labels(route, target, version, environment, status,
                                          f"{status[0]}xx")
        self.errors = m.errors.labels(route, code) if code else None
        self.gaps = m.inter_chunk.labels(route, target)
        self.duration = m.request_duration.labels(route)
        self.overhead = m.overhead_duration.labels(route)
        self.upstream = m.upstream_duration.labels(route, target)
        self.first_chunk = m.first_chunk.labels(route, target)
        self.prompt_tokens = m.tokens.labels(route, target, "prompt")
        self.completion_tokens = m.tokens.labels(route, target, "completion")
        self.cost = m.cost.labels(route, target)


def guards_text(actions: list[tuple[str, str, int]]) -> str:
    """``masked:email=2 masked:card=1`` or ``blocked:keyword=1``: kinds, never values."""
    return " ".join(f"{action}:{kind}={count}" for action, kind, count in actions)[:200]


class Recorder:
    def __init__(
        self,
        metrics: Metrics,
        ledger: LedgerWriter,
        config_version: str,
        access_log: AccessLog | None = None,
        *,
        versions: Mapping[tuple[str, str], str] | None = None,
        masker: Masker | None = None,
        recent: OrderedDict[str, Answered] | None = None,
    ) -> None:
        """``versions`` maps (route, target label) to the target's model version."""
        self._metrics = metrics
        self._ledger = ledger
        self._config_version = config_version
        self._access_log = access_log
        self._versions = dict(versions or {})
        self._masker = masker or Masker()
        self._series: dict[tuple[str | None, str | None, int, str | None, str | None],
                           _Series] = {}
        self._recent: OrderedDict[str, Answered] = OrderedDict() if recent is None else recent

    def for_version(self, config_version: str, versions: Mapping[tuple[str, str], str],
                    masker: Masker) -> Recorder:
        """The recorder of another config version: the same ledger, log and memory of
        recent answers (feedback on a request served before a reload still finds it)."""
        return Recorder(self._metrics, self._ledger, config_version, self._access_log,
                        versions=versions, masker=masker, recent=self._recent)

    def model_version(self, ctx: RequestContext) -> str | None:
        if ctx.model_version is not None:
            return ctx.model_version
        if ctx.route is None or ctx.target is None:
            return None
        return self._versions.get((ctx.route, ctx.target))

    def answered(self, request_id: str) -> Answered | None:
        """A recent request's key, route and model version, if it is still remembered."""
        return self._recent.get(request_id)

    def _series_for(self, ctx: RequestContext) -> _Series:
        """The labelled metric children of one kind of request, looked up once."""
        key = (ctx.route, ctx.target, ctx.status, ctx.environment, ctx.error_code)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = _Series(
                self._metrics, ctx.route or UNKNOWN, ctx.target or UNKNOWN, str(ctx.status),
                self.model_version(ctx) or UNKNOWN, ctx.environment or UNKNOWN,
                ctx.error_code)
        return series

    def finish(self, ctx: RequestContext, *, keep: bool = False) -> LedgerRecord | None:
        """Metrics, the log line, and the ledger row: written in the background, or, with
        ``keep``, returned (None with the ledger off) for the caller to write with its own
        transaction (a batch line's answer)."""
        latency = time.perf_counter() - ctx.started  # ctx.elapsed(), without the call
        overhead = latency - ctx.upstream_s
        if overhead < 0.0:
            overhead = 0.0
        series = self._series.get(
            (ctx.route, ctx.target, ctx.status, ctx.environment, ctx.error_code))
        if series is None:
            series = self._series_for(ctx)
        # loop_metrics' children are plain numbers, updated here in place: every request
        # passes this way, and a method call per update cost more than the updates
        series.requests.value += 1.0
        if ctx.prompt_version is not None:
            self._metrics.prompt_requests.labels(
                ctx.route or UNKNOWN, ctx.prompt_version, f"{str(ctx.status)[0]}xx").inc()
        if ctx.validation is not None:
            self._metrics.validations.labels(ctx.route or UNKNOWN, ctx.validation).inc()
        for action, kind, count in ctx.guards or ():
            self._metrics.guard_actions.labels(ctx.route or UNKNOWN, action, kind).inc(count)
        if series.errors is not None:
            series.errors.value += 1.0
        for gap in ctx.chunk_gaps:
            series.gaps.observe(gap)
        if ctx.operation is not None:
            recent = self._recent
            version = ctx.model_version  # self.model_version(ctx), without the call
            if version is None:
                version = self._versions.get((ctx.route, ctx.target))  # type: ignore[arg-type]
            recent[ctx.request_id] = (ctx.key_id, ctx.route, version)
            if len(recent) > RECENT:
                recent.popitem(last=False)
        histogram = series.duration
        histogram.counts[bisect_left(histogram.bounds, latency)] += 1
        histogram.sum += latency
        histogram = series.overhead
        histogram.counts[bisect_left(histogram.bounds, overhead)] += 1
        histogram.sum += overhead
        upstream = ctx.upstream_s
        if ctx.target is not None and upstream:
            histogram = series.upstream
            histogram.counts[bisect_left(histogram.bounds, upstream)] += 1
            histogram.sum += upstream
        if ctx.first_chunk_s is not None:
            series.first_chunk.observe(ctx.first_chunk_s)
        usage = ctx.usage
        if usage is not None:
            series.prompt_tokens.value += usage.prompt_tokens
            series.completion_tokens.value += usage.completion_tokens
        if ctx.cost_usd:
            series.cost.value += ctx.cost_usd
        if self._access_log is not None:
            self._access_log.write(self._log_fields(ctx, latency, overhead))
        if not self._ledger.enabled:
            return None
        record = self._record(ctx, latency, overhead)
        if keep:
            return record
        self._ledger.submit(record)
        return None

    def _log_fields(
        self, ctx: RequestContext, latency: float, overhead: float
    ) -> dict[str, Any]:
        extra: dict[str, Any] = {
            "request_id": ctx.request_id,
            "method": ctx.method,
            "path": ctx.path,
            "route": ctx.route,
            "target": ctx.target,
            "status": ctx.status,
            "latency_ms": round(latency * 1000, 3),
            "upstream_ms": round(ctx.upstream_s * 1000, 3),
            "overhead_ms": round(overhead * 1000, 3),
            "stream": ctx.stream,
            "config_version": self._config_version,
        }
        if ctx.usage is not None:
            extra["prompt_tokens"] = ctx.usage.prompt_tokens
            extra["completion_tokens"] = ctx.usage.completion_tokens
        if ctx.key_id is not None:
            extra["key_id"] = ctx.key_id
        if ctx.prompt_version is not None:
            extra["prompt_version"] = ctx.prompt_version
        if ctx.batch_id is not None:
            extra["batch_id"] = ctx.batch_id
        if ctx.validation is not None:
            extra["validation"] = ctx.validation
        if ctx.guards:
            extra["guards"] = guards_text(ctx.guards)
        if ctx.cost_usd is not None:
            extra["cost_usd"] = ctx.cost_usd
        if len(ctx.attempts) > 1:
            extra["attempts"] = len(ctx.attempts)
        if ctx.error_code:
            extra["error_code"] = ctx.error_code
        if ctx.client_disconnected:
            extra["client_disconnected"] = True
        if ctx.request_body is not None or ctx.response_body is not None:
            request_body, response_body = self._masked(ctx)
            if request_body is not None:
                extra["request_body"] = request_body.decode("utf-8", "replace")
            if response_body is not None:
                extra["response_body"] = response_body.decode("utf-8", "replace")
        return extra

    def _masked(self, ctx: RequestContext) -> tuple[bytes | None, bytes | None]:
        """The captured bodies, masked once per request (the log and the ledger share it)."""
        masked = (self._masker.body(ctx.request_body), self._masker.body(ctx.response_body))
        ctx.request_body, ctx.response_body = masked
        return masked

    def _record(self, ctx: RequestContext, latency: float, overhead: float) -> LedgerRecord:
        usage = ctx.usage
        if self._access_log is None and (ctx.request_body is not None
                                         or ctx.response_body is not None):
            self._masked(ctx)
        return LedgerRecord(
            request_id=ctx.request_id,
            created_at=ctx.created_at,
            method=ctx.method,
            path=ctx.path[:256],
            operation=ctx.operation.value if ctx.operation else None,
            route=ctx.route,
            target=ctx.target,
            stream=ctx.stream,
            status=ctx.status,
            error_code=ctx.error_code,
            latency_ms=latency * 1000,
            upstream_ms=ctx.upstream_s * 1000,
            overhead_ms=overhead * 1000,
            first_chunk_ms=None if ctx.first_chunk_s is None else ctx.first_chunk_s * 1000,
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
            config_version=self._config_version,
            client_disconnected=ctx.client_disconnected,
            request_body=ctx.request_body,
            response_body=ctx.response_body,
            key_id=ctx.key_id,
            environment=ctx.environment,
            cost_usd=ctx.cost_usd,
            attempts=len(ctx.attempts) if ctx.operation is not None else None,
            attempt_log=_attempt_log(ctx),
            model_version=self.model_version(ctx),
            queue_ms=ctx.queue_s * 1000 if ctx.queue_s else None,
            usage_estimated=ctx.usage_estimated or None,
            prompt_version=ctx.prompt_version,
            validation=ctx.validation,
            guards=guards_text(ctx.guards) if ctx.guards else None,
            batch_id=ctx.batch_id,
        )


def _attempt_log(ctx: RequestContext) -> str | None:
    """Every attempt, when there was more than one or one failed; None otherwise (the
    common case costs nothing)."""
    attempts = ctx.attempts
    if not attempts or (len(attempts) == 1 and attempts[0].error_class is None):
        return None
    return orjson.dumps([
        {"target": a.target, "status": a.status, "error_class": a.error_class,
         "ms": round(a.ms, 3)} for a in attempts
    ]).decode()
