"""Applying a config version to a running server: validated whole, kept, swapped at once.

``ConfigReloader.apply`` validates the new config exactly as ``modelport serve`` would (and
refuses one that changes what only a restart can, ``config.versions``), keeps it in the
store as a numbered, immutable version, then builds the ``Services`` of that version from
the running one and makes it current in one assignment. What is unchanged carries over:
providers (their connection pools, a local model's process), targets (breakers, statistics,
gates), canaries, the limiter's state and the budgets. A request in flight finishes on the
version it started with; a provider the new version dropped or changed is closed once the
requests of the versions that used it are done. ``SIGHUP`` re-reads the file the server was
started with; ``PUT /admin/config`` and ``modelport config apply|rollback`` send a text.
Applies are serialised: one at a time, in the order they arrive.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from modelport import __version__
from modelport.api.services import Generation, Live, Services, model_versions, serving
from modelport.config.load import load_text, read_text, version_of
from modelport.config.settings import Settings
from modelport.config.versions import changes, restart_problems
from modelport.errors import ConfigError, NotFound, ServiceUnavailable
from modelport.observability.logging import learn_secrets
from modelport.observability.masking import Masker
from modelport.policy.setup import access_for, seed_budgets
from modelport.providers import Provider, build_provider
from modelport.providers.openai import OpenAIProvider
from modelport.routing.table import RouteTable
from modelport.store.config_versions import ConfigVersionRow, ConfigVersionStore

RELOADER_KEY = "modelport.reloader"
log = logging.getLogger("modelport.config")
_DRAIN_POLL_S = 0.1


@dataclass(frozen=True, slots=True)
class Applied:
    """What an apply did: the version kept (None for a dry run or an unchanged config)
    and the names added, removed and changed."""

    row: ConfigVersionRow | None
    config_version: str
    changes: Mapping[str, Mapping[str, list[str]]]
    unchanged: bool = False


class ConfigReloader:
    def __init__(self, live: Live, environ: Mapping[str, str] | None = None) -> None:
        self.live = live
        self._environ = environ
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def store(self) -> ConfigVersionStore:
        store = self.live.current.config_store
        if store is None:
            raise ServiceUnavailable("Config versions need the store.")
        return store

    async def keep_started(self) -> None:
        """Keep the config the server started with as a version, unless it is the latest
        one kept already (a restart with the same file adds nothing)."""
        services = self.live.current
        text = _started_text(services.settings)
        if text is None or services.config_store is None:
            return
        try:
            latest = await asyncio.to_thread(services.config_store.latest)
            if latest is not None and latest.config_version == services.settings.config_version:
                services.generation.number = latest.id
                return
            row = await asyncio.to_thread(
                services.config_store.record, config_version=services.settings.config_version,
                text=text, action="start", source=services.settings.source, reason="",
                actor="modelport", client=None)
            services.generation.number = row.id
        except Exception as exc:  # the store is down: serve anyway; the next apply keeps one
            log.warning("cannot keep the config version", extra={"error": type(exc).__name__})

    async def apply(self, text: str, *, source: str, action: str, actor: str,
                    client: str | None, reason: str = "", restores: int | None = None,
                    dry_run: bool = False) -> Applied:
        """Validate, keep and put in force a config given as YAML text. Raises
        ``ConfigError`` listing every problem (the running config stays), or
        ``ServiceUnavailable`` when the store cannot keep the version."""
        async with self._lock:
            old = self.live.current
            settings = await asyncio.to_thread(load_text, text, source, self._environ,
                                                 old.settings)
            problems = restart_problems(old.settings, settings)
            if problems:
                raise ConfigError(problems)
            found = changes(old.settings, settings)
            if replace(settings, source=old.settings.source) == old.settings:
                return Applied(None, settings.config_version, found, unchanged=True)
            if dry_run:
                return Applied(None, settings.config_version, found)
            started = time.perf_counter()
            providers, fresh = _providers(old, settings)
            try:
                await _start_remote(settings, fresh)
                row = await asyncio.to_thread(
                    self.store.record, config_version=settings.config_version, text=text,
                    action=action, source=source, reason=reason, actor=actor, client=client,
                    restores=restores)
            except BaseException:
                for provider in fresh.values():
                    await provider.close()
                raise
            new = next_services(old, settings, providers, row.id)
            self.live.current = new  # from the next request on
            await self._settle(old, new, fresh)
            log.info("config applied", extra={
                "config_version": settings.config_version, "number": row.id,
                "action": action, "actor": actor,
                "ms": round((time.perf_counter() - started) * 1000, 1),
                **{f"{kind}_{what}": names for kind, diff in found.items()
                   for what, names in diff.items() if names}})
            return Applied(row, settings.config_version, found)

    async def rollback(self, ref: str, *, actor: str, client: str | None,
                       reason: str = "") -> Applied:
        """Apply a kept version's text again, as a new version that names it."""
        row = await asyncio.to_thread(self.store.find, ref)
        if row is None:
            raise NotFound(f"No config version '{ref}' is kept.")
        return await self.apply(row.text, source=f"rollback to {row.id}", action="rollback",
                                actor=actor, client=client, reason=reason, restores=row.id)

    async def reread(self) -> Applied | None:
        """Apply the file the server was started with again (``SIGHUP``); problems are
        logged, one per line, and the running config stays."""
        source = self.live.current.settings.source
        try:
            text = await asyncio.to_thread(read_text, Path(source))
            return await self.apply(text, source=source, action="signal", actor="signal",
                                    client=None)
        except ConfigError as exc:
            for problem in exc.problems:
                log.error("config not applied", extra={"source": source, "problem": problem})
        except ServiceUnavailable as exc:
            log.error("config not applied", extra={"source": source, "problem": exc.message})
        return None

    def on_hangup(self) -> None:
        self._spawn(self.reread())

    async def _settle(self, old: Services, new: Services,
                      fresh: Mapping[str, Provider]) -> None:
        """What follows the swap: the long-lived parts learn the new version, local models
        it added start loading, and what it dropped is closed once no request uses it."""
        metrics = new.metrics
        metrics.info.clear()
        metrics.info.labels(__version__, new.settings.config_version).set(1)
        if new.key_sync is not None:
            new.key_sync.reconfigure(new.settings.keys)
            self._spawn(seed_budgets(new.access, new.usage))
        if new.canaries is not None:
            new.canaries.adopt(new.routes)
            self._spawn(new.canaries.refresh())
        if new.retention is not None:
            await new.retention.use({r.name: r.retention_days
                                     for r in new.settings.routes.values()
                                     if r.capture and r.retention_days is not None})
        secrets = new.settings.secrets()
        learn_secrets(secrets)
        if new.access_log is not None:
            new.access_log.learn(secrets)
        new.provider_set.add(fresh)
        for name, provider in fresh.items():
            if new.settings.providers[name].local is not None:
                self._spawn(_load(provider))
        dropped = [p for p in old.providers.values()
                   if p not in new.providers.values()]
        if dropped:
            self._spawn(_retire(old, dropped))

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    @classmethod
    @asynccontextmanager
    async def running(cls, services: Services, *, hangup: bool = False,
                      environ: Mapping[str, str] | None = None) -> AsyncIterator[ConfigReloader]:
        """The reloader of a started server; with ``hangup``, ``SIGHUP`` re-reads the file
        (where the loop can take signals: the main thread of ``modelport serve``)."""
        reloader = cls(Live(services), environ)
        await reloader.keep_started()
        loop = asyncio.get_running_loop()
        listening = False
        if hangup:
            with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
                loop.add_signal_handler(signal.SIGHUP, reloader.on_hangup)
                listening = True
        try:
            yield reloader
        finally:
            if listening:
                loop.remove_signal_handler(signal.SIGHUP)
            await reloader.close()


def next_services(old: Services, settings: Settings, providers: Mapping[str, Provider],
                  number: int | None) -> Services:
    """The services of another config version, built from the running one's."""
    routes = RouteTable(settings, providers, old.metrics, previous=old.routes)
    access = access_for(old.access, old.settings, settings)
    masker = Masker(settings.secrets())
    recorder = old.recorder.for_version(settings.config_version, model_versions(settings),
                                        masker)
    return replace(old, **serving(
        settings, providers, routes, access, recorder, masker, metrics=old.metrics,
        tracing=old.tracing, switches=old.switches, shadows=old.shadows, tensors=old.tensors,
        reviews=old.reviews),
        generation=Generation(number))


def _providers(old: Services, settings: Settings
               ) -> tuple[dict[str, Provider], dict[str, Provider]]:
    """Every provider of the new version, and the ones among them that are new (an
    unchanged provider is the running one, pools and all)."""
    providers: dict[str, Provider] = {}
    fresh: dict[str, Provider] = {}
    for name, wanted in settings.providers.items():
        running = old.providers.get(name)
        if running is not None and old.settings.providers.get(name) == wanted:
            providers[name] = running
        else:
            providers[name] = fresh[name] = build_provider(wanted, old.metrics)
            if old.tracing is not None and isinstance(fresh[name], OpenAIProvider):
                fresh[name].propagate_traces(old.tracing)  # type: ignore[attr-defined]
    return providers, fresh


async def _start_remote(settings: Settings, fresh: Mapping[str, Provider]) -> None:
    """Remote providers are ready at once (a connection pool); a local model loads in the
    background after the swap, its routes answering 503 until it is loaded."""
    await asyncio.gather(*(p.start() for name, p in fresh.items()
                           if settings.providers[name].local is None))


async def _load(provider: Provider) -> None:
    try:
        await provider.start()
    except Exception:
        log.exception("runtime_start_failed", extra={"provider": provider.name})


async def _retire(old: Services, dropped: list[Provider]) -> None:
    """Close providers no longer in force once the requests of the version that used them
    are done (at most the longest deadline of its routes later)."""
    deadline = time.monotonic() + max(
        (r.deadline_s for r in old.settings.routes.values()), default=600.0)
    while old.generation.in_flight > 0 and time.monotonic() < deadline:
        await asyncio.sleep(_DRAIN_POLL_S)
    for provider in dropped:
        await old.provider_set.close(provider)


def _started_text(settings: Settings) -> str | None:
    """The text of the file the server was started with, when it is still the config in
    force (it may have been edited since); None for the offline default."""
    try:
        text = Path(settings.source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return text if version_of(text) == settings.config_version else None
