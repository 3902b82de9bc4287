"""V2 tensor inference as a use case: the same steps and policy as a route's request.

A tensor model is named like a route: a key lists it among its routes, and it has an
environment, its own limits (``rpm``, ``max_concurrency``) and an admission gate, from its
``config.yaml``. A request is authorised (403), admitted (the key's and the model's limits,
the key's budget: 429 with ``Retry-After``; the gate: a wait by priority and key, or 503),
run, and settled; the request context carries what the recorder writes to the ledger, the
metrics and the log line, as for a chat request, refusals included.
"""

from __future__ import annotations

import time

import numpy as np

from modelport.core.context import RequestContext
from modelport.core.operation import Operation
from modelport.core.pricing import Price
from modelport.policy.access import AccessPolicy
from modelport.policy.keys import Principal
from modelport.policy.switches import Switchboard
from modelport.protocol.v2 import InferRequest
from modelport.tensors.service import TensorModel, TensorService

_FREE = Price()  # tensor models have no token prices; a key's spent budget still refuses


def _no_tokens() -> tuple[int, int]:
    return 0, 0


class TensorInference:
    def __init__(self, tensors: TensorService, access: AccessPolicy,
                 switches: Switchboard | None = None) -> None:
        self.tensors = tensors
        self._access = access
        self._switches = switches or Switchboard()

    def authorize(self, principal: Principal | None, name: str, ctx: RequestContext
                  ) -> TensorModel:
        """The model, when the principal may call it (``None``: open mode); 404 for a model
        not in the repository, 403 for a key that may not call it. The model is the
        request's route and ``v2/<name>`` its target; they, the key and the model's
        environment are noted first, so that a refusal is recorded with them (named only
        once the model is known: what a client sends never becomes a metric label)."""
        model, _ = self.tensors.get(name)
        ctx.route, ctx.target = name, f"v2/{name}"
        ctx.environment = model.environment
        if principal is not None:
            ctx.key_id = principal.key_id
        self._access.authorize(principal, model)
        return model

    async def infer(self, principal: Principal | None, model: TensorModel, version: str | None,
                    request: InferRequest, ctx: RequestContext, *, priority: int = 1,
                    ) -> tuple[int, list[tuple[str, np.ndarray, bool]]]:
        """Admit, run and settle a request for a model ``authorize`` gave; the served
        version (the target's model version, for the record) and the outputs."""
        ctx.operation = Operation.INFER
        if self._switches.any_off:
            self._check_switches(principal, model)
        ticket = self._access.admit(principal, model, _FREE, _no_tokens)
        tenant = principal.key_id if principal is not None else ""
        try:
            slot = await model.gate.acquire(
                priority=priority, tenant=tenant,
                deadline=time.monotonic() + model.source.config.admission_timeout_s)
            ctx.queue_s += slot.waited_s
            started = time.perf_counter()
            try:
                chosen, outputs = await self.tensors.infer(model.name, version, request)
            finally:
                ctx.upstream_s += time.perf_counter() - started  # the model's own time
                slot.release()
        finally:
            if ticket is not None:
                ticket.finish(None, None)  # no tokens, no cost: limit slots given back
        ctx.model_version = str(chosen)
        return chosen, outputs

    def _check_switches(self, principal: Principal | None, model: TensorModel) -> None:
        """A tensor model carries no text and has no fallback: any switch that stops it
        (everything, its key, the model by name as a route or a model) refuses."""
        board = self._switches
        switch = board.for_request(model.name, principal.key_id if principal else None)
        if switch is None and board.targets_off:
            switch = board.for_target("", model.name)
        if switch is not None:
            raise switch.refusal()
