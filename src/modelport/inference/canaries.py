"""Keeping the routes' canaries and the store in step, both ways, off the request path.

A rollback a canary decided (``routing.canary``) is logged, counted
(``modelport_canary_rollbacks_total``) and written to the store with its audit entry, so
that every replica stops sending it traffic on its next poll and a restart does too. An
operator's promote, abort or resume (admin API, CLI) is written the same way and applied
here at once. On every change of the store's revision (``policy.sync``'s poll), the stored
states are applied to this server's canaries; a change made here and not yet written holds
off that poll, so that an older read cannot undo it.
"""

from __future__ import annotations

import asyncio
import logging

from modelport.errors import RequestError
from modelport.observability.metrics import Metrics
from modelport.routing.canary import RUNNING, Canary
from modelport.routing.table import RouteTable
from modelport.store.canaries import CanaryStore

log = logging.getLogger("modelport.canary")
ACTIONS = {"promote": "promoted", "abort": "aborted", "resume": RUNNING}


class CanaryKeeper:
    def __init__(self, routes: RouteTable, store: CanaryStore, metrics: Metrics) -> None:
        self._routes = routes
        self._store = store
        self._metrics = metrics
        self._writing = 0  # local changes on their way to the store
        self._tasks: set[asyncio.Task[None]] = set()
        self.adopt(routes)

    def adopt(self, routes: RouteTable) -> None:
        """Keep the canaries of these routes from now on (a config version applied)."""
        self._routes = routes
        for canary in routes.canaries():
            canary.on_change = self._rolled_back

    def _rolled_back(self, canary: Canary, reason: str) -> None:
        log.warning("canary rolled back", extra={"route": canary.route,
                                                  "target": canary.target, "reason": reason})
        self._metrics.canary_rollbacks.labels(canary.route, canary.target).inc()
        task = asyncio.get_running_loop().create_task(
            self._write(canary, canary.state, reason, "modelport", None))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def act(self, route: str, action: str, reason: str, actor: str,
                  client: str | None) -> Canary:
        """An operator's promote, abort or resume: applied here at once, then stored."""
        canary = next((c for c in self._routes.canaries() if c.route == route), None)
        if canary is None:
            raise RequestError(f"Route '{route}' has no canary.", param="route")
        canary.set_state(ACTIONS[action], reason)
        await self._write(canary, canary.state, reason, actor, client)
        return canary

    async def _write(self, canary: Canary, state: str, reason: str, actor: str,
                     client: str | None) -> None:
        self._writing += 1
        try:
            await asyncio.to_thread(self._store.set_state, route=canary.route,
                                    target=canary.target, state=state, reason=reason,
                                    actor=actor, client=client)
        except Exception as exc:  # the rollback holds here; the store hears of it later
            log.error("cannot record a canary's state", extra={
                "route": canary.route, "state": state, "error": type(exc).__name__})
        finally:
            self._writing -= 1

    async def refresh(self) -> None:
        """Apply the stored states (the store's revision moved)."""
        if self._writing or not any(True for _ in self._routes.canaries()):
            return
        try:
            rows = {r.route: r for r in await asyncio.to_thread(self._store.list_canaries)}
        except Exception as exc:  # the store is down: the canaries keep what they have
            log.warning("cannot read canary states", extra={"error": type(exc).__name__})
            return
        if self._writing:
            return  # changed here meanwhile: what was read may predate it
        for canary in self._routes.canaries():
            row = rows.get(canary.route)
            if row is not None and row.target == canary.target:
                if canary.state != row.state:
                    canary.set_state(row.state, row.reason)
            elif canary.state != RUNNING:
                canary.set_state(RUNNING)

    async def close(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
