"""Keeping the key ring and the kill switches in step with the store, off the request path.

Keys created, rotated or revoked, and switches turned off or on, through this server's admin
API reach it at once. Changes made elsewhere (the CLI, another replica) are noticed by
polling the store's revision counter every ``interval_s`` (one tiny query) and reloading
the keys and the switches when it moved.
If the store cannot be read, the ring keeps what it has (a key revoked meanwhile elsewhere
stays usable here until the store answers again) and the failure is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping

from modelport.config.settings import KeySettings
from modelport.policy.keys import KeyRing
from modelport.policy.switches import Switch, Switchboard
from modelport.store.keys import KeyStore
from modelport.store.switches import SwitchRow, SwitchStore

log = logging.getLogger("modelport.keys")


class KeySync:
    def __init__(
        self,
        ring: KeyRing,
        store: KeyStore,
        config_keys: Mapping[str, KeySettings],
        interval_s: float = 1.0,
        prepare: Callable[[], None] | None = None,
        on_tick: Callable[[], object] | None = None,
        switches: tuple[SwitchStore, Switchboard] | None = None,
    ) -> None:
        self._switches = switches
        # called after the keys and switches were reloaded for a new revision: what else
        # follows the store (the routes' canaries)
        self.on_revision: Callable[[], Awaitable[object]] | None = None
        self._on_tick = on_tick
        self._prepare = prepare
        self._ring = ring
        self._store = store
        self._config_keys = config_keys
        self._interval = interval_s
        self._revision: int | None = None
        self._task: asyncio.Task[None] | None = None
        # called once, after the first successful read of the store (at start, or when a
        # store that was down at start comes back): what must follow the keys, such as
        # each key's spend this period
        self.on_first_sync: Callable[[], Awaitable[object]] | None = None
        self.synced = False

    async def refresh(self) -> bool:
        """Reload the ring if the store changed; False when the store could not be read."""
        try:
            if self._revision is None and self._prepare is not None:
                await asyncio.to_thread(self._prepare)  # the schema, before the first read
            mutations = self._mutations()
            revision = await asyncio.to_thread(self._store.revision)
            if revision != self._revision:
                rows = await asyncio.to_thread(self._store.list_keys)
                switches = None
                if self._switches is not None:
                    switches = await asyncio.to_thread(self._switches[0].list_switches)
                if self._mutations() != mutations:
                    return True  # changed here while reading: the rows may predate it
                self._ring.load(self._config_keys, rows)
                if self._switches is not None and switches is not None:
                    self._switches[1].load(switch_of(r) for r in switches)
                self._revision = revision
                if self.on_revision is not None:
                    await self.on_revision()
            if not self.synced:
                if self.on_first_sync is not None:
                    await self.on_first_sync()
                self.synced = True
        except Exception as exc:  # the poller must outlive any store failure; it retries
            log.warning("cannot read keys from the store", extra={"error": type(exc).__name__})
            return False
        return True

    def reconfigure(self, config_keys: Mapping[str, KeySettings]) -> None:
        """Another config version's keys, in force at once."""
        before, self._config_keys = self._config_keys, config_keys
        self._ring.replace_config(before, config_keys)

    def _mutations(self) -> tuple[int, int]:
        board = self._switches[1].mutations if self._switches is not None else 0
        return self._ring.mutations, board

    async def start(self) -> None:
        self._ring.load(self._config_keys, ())
        await self.refresh()
        self._task = asyncio.create_task(self._run(), name="modelport-key-sync")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.refresh()
            if self._on_tick is not None:
                self._on_tick()  # housekeeping that shares the tick (limiter pruning)


def switch_of(row: SwitchRow) -> Switch:
    return Switch(row.scope, row.name, row.behaviour, row.message, row.fallback_route,
                  row.reason, row.actor, row.created_at)
