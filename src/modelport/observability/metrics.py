"""Every Prometheus metric Modelport exports, defined in this one module.

Each app owns its registry (no process-wide state), so that several apps can live in one
test process. The metric objects are ``loop_metrics``' lock-free ones: every update happens
on the event loop thread. Label values are bounded: route and target come from the config,
an unknown route is ``-``, and status is the HTTP status code.

| metric | type | labels |
|---|---|---|
| modelport_requests_total | counter | route, target, model_version, environment, status, |
| | | status_class |
| modelport_errors_total | counter | route, code |
| modelport_prompt_requests_total | counter | route, prompt_version, status_class |
| modelport_validations_total | counter | route, outcome |
| modelport_guard_actions_total | counter | route, action, kind |
| modelport_reviews_pending | gauge | route |
| modelport_review_oldest_pending_seconds | gauge | route |
| modelport_review_decision_seconds | histogram | route, status |
| modelport_batch_lines_total | counter | outcome (done, failed, waiting, paused, dropped) |
| modelport_batches_ended_total | counter | |
| modelport_canary_rollbacks_total | counter | route, target |
| modelport_shadow_requests_total | counter | route, target, outcome |
| modelport_canary_state | gauge | route, target (0 running, 1 rolled back, 2 aborted, 3 promoted) |
| modelport_inter_chunk_seconds | histogram | route, target |
| modelport_feedback_total | counter | route, model_version, outcome |
| modelport_ledger_lag_seconds | gauge | |
| modelport_key_budget_usd | gauge | key (the key's id) |
| modelport_key_budget_spent_usd | gauge | key |
| modelport_switch_off | gauge | scope, name (a kill switch that is off: 1) |
| modelport_request_duration_seconds | histogram | route |
| modelport_upstream_duration_seconds | histogram | route, target |
| modelport_overhead_duration_seconds | histogram | route |
| modelport_time_to_first_chunk_seconds | histogram | route, target |
| modelport_tokens_total | counter | route, target, direction |
| modelport_cost_usd_total | counter | route, target |
| modelport_requests_in_flight | gauge | |
| modelport_breaker_state | gauge | route, target |
| modelport_breaker_transitions_total | counter | route, target, state |
| modelport_queue_wait_seconds | histogram | route, target |
| modelport_queue_depth | gauge | route, target |
| modelport_target_in_flight | gauge | route, target |
| modelport_upstream_attempts_total | counter | route, target, outcome |
| modelport_ledger_written_total | counter | |
| modelport_ledger_dropped_total | counter | reason |
| modelport_ledger_write_errors_total | counter | |
| modelport_ledger_pending | gauge | |
| modelport_info | gauge | version, config_version |
| modelport_runtime_ready | gauge | runtime |
| modelport_runtime_restarts_total | counter | runtime |
| modelport_runtime_batch_size | histogram | runtime |
| modelport_runtime_requests_total | counter | runtime, version, status |
| modelport_runtime_duration_seconds | histogram | runtime |
| modelport_runtime_queue_depth | gauge | runtime |

A runtime is a local model (a tensor model by name, or a local provider), so its label
values come from the config and the model repository.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from modelport.observability.loop_metrics import Counter, Gauge, Histogram

UNKNOWN = "-"
DROP_REASONS = ("overflow", "rejected", "shutdown")
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                    2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
_OVERHEAD_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                     0.05, 0.1, 0.25, 1.0)

_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._answer_metrics(r)
        self._review_metrics(r)
        self._batch_metrics(r)
        self._target_metrics(r)
        self._ledger_metrics(r)
        self._runtime_metrics(r)

    def _review_metrics(self, r: CollectorRegistry) -> None:
        """The review queue: its depth, its oldest item, the time to a decision."""
        self.reviews_pending = Gauge(
            "modelport_reviews_pending", "Review items waiting for a decision.", ["route"],
            registry=r,
        )
        self.review_oldest = Gauge(
            "modelport_review_oldest_pending_seconds",
            "How long the oldest pending review item has waited.", ["route"], registry=r,
        )
        self.review_decisions = Histogram(
            "modelport_review_decision_seconds", "Time from an item's hold to its decision.",
            ["route", "status"], buckets=(60, 300, 900, 3600, 4 * 3600, 24 * 3600, 7 * 86400),
            registry=r,
        )

    def _batch_metrics(self, r: CollectorRegistry) -> None:
        """Batch lines as the runner ends them, and batches ended."""
        self.batch_lines = Counter(
            "modelport_batch_lines", "Batch lines ended (done, failed), sent back to wait "
            "(waiting, paused) or answered after their lease was lost (dropped).",
            ["outcome"], registry=r,
        )
        self.batches_ended = Counter(
            "modelport_batches_ended", "Batches that ended (completed, cancelled or expired).",
            registry=r,
        )

    def _answer_metrics(self, r: CollectorRegistry) -> None:
        """Requests, their latency split, tokens, cost and feedback."""
        self.requests = Counter(
            "modelport_requests", "Requests answered.",
            ["route", "target", "model_version", "environment", "status", "status_class"],
            registry=r,
        )
        self.prompt_requests = Counter(
            "modelport_prompt_requests", "Requests of routes with a prompt, by its version.",
            ["route", "prompt_version", "status_class"], registry=r,
        )
        self.validations = Counter(
            "modelport_validations", "Answers checked against an output contract, by outcome "
            "(passed, repaired, failed).", ["route", "outcome"], registry=r,
        )
        self.guard_actions = Counter(
            "modelport_guard_actions", "Input guards' actions: values masked by kind "
            "(email, phone, card, iban, secret), requests blocked by rule.",
            ["route", "action", "kind"], registry=r,
        )
        self.shadow_requests = Counter(
            "modelport_shadow_requests", "Shadow calls, by outcome (match, differ, error, "
            "over_budget).", ["route", "target", "outcome"], registry=r,
        )
        self.canary_rollbacks = Counter(
            "modelport_canary_rollbacks", "Canaries rolled back for missing their objective.",
            ["route", "target"], registry=r,
        )
        self.canary_state = Gauge(
            "modelport_canary_state",
            "A route's canary: 0 running, 1 rolled back, 2 aborted, 3 promoted.",
            ["route", "target"], registry=r,
        )
        self.errors = Counter(
            "modelport_errors", "Requests that ended in an error, by error code.",
            ["route", "code"], registry=r,
        )
        self.inter_chunk = Histogram(
            "modelport_inter_chunk_seconds", "Gaps between the chunks of a streamed answer.",
            ["route", "target"], buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.feedback = Counter(
            "modelport_feedback", "User feedback on answers, by outcome (accepted, edited, "
            "rejected): edited plus rejected over all is the correction rate.",
            ["route", "model_version", "outcome"], registry=r,
        )
        self.key_budget = Gauge(
            "modelport_key_budget_usd", "A key's budget for its current period (by key id).",
            ["key"], registry=r,
        )
        self.key_budget_spent = Gauge(
            "modelport_key_budget_spent_usd", "What a key has spent of its budget this period.",
            ["key"], registry=r,
        )
        self.switch_off = Gauge(
            "modelport_switch_off", "1 for each kill switch that is off now.",
            ["scope", "name"], registry=r,
        )
        self.ledger_lag = Gauge(
            "modelport_ledger_lag_seconds", "Age of the oldest ledger record not yet written.",
            registry=r,
        )
        self.request_duration = Histogram(
            "modelport_request_duration_seconds", "Time from request to the end of the answer.",
            ["route"], buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.upstream_duration = Histogram(
            "modelport_upstream_duration_seconds", "Time spent waiting on the provider.",
            ["route", "target"], buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.overhead_duration = Histogram(
            "modelport_overhead_duration_seconds",
            "Time Modelport itself spent on a request, outside the provider call.",
            ["route"], buckets=_OVERHEAD_BUCKETS, registry=r,
        )
        self.first_chunk = Histogram(
            "modelport_time_to_first_chunk_seconds",
            "Time from request to the first streamed chunk sent to the client.",
            ["route", "target"], buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.tokens = Counter(
            "modelport_tokens", "Tokens reported by providers.",
            ["route", "target", "direction"], registry=r,
        )
        self.cost = Counter(
            "modelport_cost_usd", "Cost of answered requests, from target prices, in USD.",
            ["route", "target"], registry=r,
        )

    def _target_metrics(self, r: CollectorRegistry) -> None:
        """Breakers, admission queues and calls to providers."""
        self.breaker_state = Gauge(
            "modelport_breaker_state", "Circuit breaker: 0 closed, 1 half-open, 2 open.",
            ["route", "target"], registry=r,
        )
        self.breaker_transitions = Counter(
            "modelport_breaker_transitions", "Circuit breaker state changes, by new state.",
            ["route", "target", "state"], registry=r,
        )
        self.queue_wait = Histogram(
            "modelport_queue_wait_seconds", "Time requests waited for a target's slot.",
            ["route", "target"], buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.queue_depth = Gauge(
            "modelport_queue_depth", "Requests waiting for a target's slot.",
            ["route", "target"], registry=r,
        )
        self.target_in_flight = Gauge(
            "modelport_target_in_flight", "Requests a target is serving now.",
            ["route", "target"], registry=r,
        )
        self.attempts = Counter(
            "modelport_upstream_attempts", "Calls to providers, by outcome class.",
            ["route", "target", "outcome"], registry=r,
        )

    def _ledger_metrics(self, r: CollectorRegistry) -> None:
        """The ledger writer, requests in flight and what is in force."""
        self.in_flight = Gauge(
            "modelport_requests_in_flight", "Requests being served now.", registry=r
        )
        self.in_flight_now = self.in_flight.labels()  # its one value, updated per request
        self.ledger_written = Counter(
            "modelport_ledger_written", "Ledger records written to the store.", registry=r
        )
        self.ledger_dropped = Counter(
            "modelport_ledger_dropped", "Ledger records given up on, by reason.", ["reason"],
            registry=r,
        )
        self.ledger_write_errors = Counter(
            "modelport_ledger_write_errors", "Failed attempts to write a ledger batch.",
            registry=r,
        )
        self.ledger_pending = Gauge(
            "modelport_ledger_pending", "Ledger records waiting to be written.", registry=r
        )
        for reason in DROP_REASONS:
            self.ledger_dropped.labels(reason)  # present at zero, so alerts can use rate()
        self.info = Gauge(
            "modelport_info", "Always 1; labels name the version and config in force.",
            ["version", "config_version"], registry=r,
        )

    def _runtime_metrics(self, r: CollectorRegistry) -> None:
        """Local models: readiness, restarts, batches, tensor requests."""
        self.runtime_ready = Gauge(
            "modelport_runtime_ready", "1 when a local model is loaded and warmed up.",
            ["runtime"], registry=r,
        )
        self.runtime_restarts = Counter(
            "modelport_runtime_restarts", "Worker processes restarted after a crash.",
            ["runtime"], registry=r,
        )
        self.runtime_batch_size = Histogram(
            "modelport_runtime_batch_size", "Rows (or sequences) in each model call.",
            ["runtime"], buckets=_BATCH_BUCKETS, registry=r,
        )
        self.runtime_requests = Counter(
            "modelport_runtime_requests", "Tensor inference requests answered, by status.",
            ["runtime", "version", "status"], registry=r,
        )
        self.runtime_duration = Histogram(
            "modelport_runtime_duration_seconds", "Time to answer a tensor inference request.",
            ["runtime"], buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.runtime_queue_depth = Gauge(
            "modelport_runtime_queue_depth", "Requests waiting for a batch, by model.",
            ["runtime"], registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
