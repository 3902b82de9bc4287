"""``modelport keys``: create, list, revoke and rotate the API keys kept in the store.

A new key is printed once, on stdout, and never again: the store keeps only its SHA-256.
Bad input exits with status 2 and a one-line reason, an unknown key id with status 1;
never a traceback. Settings come from ``cli.source``, as for ``modelport serve``, so its
problems print the same way and the store is the one ``serve`` would use. No SQL here:
``modelport.store`` does it.
"""

from __future__ import annotations

import getpass
import json
import math
import socket
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import click

from modelport.cli.source import settings_serve_would_use
from modelport.config import Settings
from modelport.config.settings import key_route_problem
from modelport.errors import ConfigError, ServiceUnavailable
from modelport.policy.secrets import display_prefix, hash_key, new_key, new_key_id
from modelport.protocol.admin import MAX_BUDGET_USD, MAX_CONCURRENCY, MAX_PER_MINUTE
from modelport.store import KeyRow, KeyStore, UsageStore

EXIT_NOT_FOUND = 1
EXIT_USAGE = 2


@dataclass(frozen=True, slots=True)
class ConfigSource:
    """How a command finds its settings (``cli.source``; a test may hand in another)."""

    load: Callable[[str | None], Settings] = settings_serve_would_use

    def settings(self, path: str | None) -> Settings:
        return self.load(path)


def config_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--config", "config_path", default=None, metavar="PATH",
        help="The YAML configuration file [default: the one `modelport serve` reads].",
    )(func)


@contextmanager
def store_errors() -> Iterator[None]:
    """Store failures as one line and an exit status, never a traceback."""
    try:
        yield
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(f"modelport: {problem}", err=True)
        sys.exit(EXIT_USAGE)
    except ServiceUnavailable as exc:
        click.echo(f"modelport: {exc.message}", err=True)
        sys.exit(1)


def actor() -> str:
    try:
        return "cli:" + getpass.getuser()
    except (OSError, KeyError):  # no login name and no passwd entry (some containers)
        return "cli:unknown"


def client() -> str:
    return socket.gethostname()[:64]


def stamp(value: datetime | None) -> str:
    return "-" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M")


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *rows, strict=True)]
    lines = [headers, *rows]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def command() -> click.Group:
    """The ``keys`` command group."""
    return click.Group(
        "keys", commands=[create, list_keys, revoke, rotate],
        help="Create, list, revoke and rotate API keys (kept, hashed, in the store).",
        context_settings={"obj": ConfigSource()},
    )


class _Timestamp(click.ParamType[datetime, Any]):
    """An ISO 8601 date or time; one without a zone is taken as UTC."""

    name = "ISO8601"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            parsed = datetime.fromisoformat(str(value))
        except ValueError:
            self.fail(f"{value!r} is not an ISO 8601 time such as 2030-01-31T12:00:00Z",
                      param, ctx)
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


def _budget(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    if value is not None and not (math.isfinite(value) and 0 <= value <= MAX_BUDGET_USD):
        raise click.BadParameter(f"must be a number of dollars from 0 to {MAX_BUDGET_USD:.0f}")
    return value


@click.command("create")
@click.argument("name")
@click.option("--route", "routes", multiple=True, metavar="ROUTE",
              help="A route the key may call; repeat for more [default: every route of its "
                   "environment].")
@click.option("--environment", type=click.Choice(["dev", "test", "prod"]), default="prod",
              show_default=True)
@click.option("--rpm", type=click.IntRange(1, MAX_PER_MINUTE), help="Requests per minute.")
@click.option("--tpm", type=click.IntRange(1, MAX_PER_MINUTE), help="Tokens per minute.")
@click.option("--max-concurrency", type=click.IntRange(1, MAX_CONCURRENCY),
              help="Requests in flight at once.")
@click.option("--budget-usd", type=float, callback=_budget, help="Spend allowed per period.")
@click.option("--budget-period", type=click.Choice(["day", "month"]),
              help="The budget's period (UTC) [default: month when --budget-usd is given].")
@click.option("--expires-at", type=_Timestamp(), help="When the key stops working (UTC if no "
              "zone is given).")
@click.option("--priority", type=click.Choice(["interactive", "batch"]), default="interactive",
              show_default=True, help="The highest queue priority the key may ask for.")
@click.option("--role", type=click.Choice(["caller", "reviewer"]), default="caller",
              show_default=True, help="reviewer: decides reviews (/admin/reviews, the "
              "dashboard's queue) and calls no route.")
@config_option
@click.pass_obj
def create(source: ConfigSource, name: str, routes: tuple[str, ...], environment: str,
           rpm: int | None, tpm: int | None, max_concurrency: int | None,
           budget_usd: float | None, budget_period: str | None, expires_at: datetime | None,
           priority: str, role: str, config_path: str | None) -> None:
    """Create a key called NAME and print it, once."""
    name = name.strip()
    if not name or len(name) > 200:
        raise click.BadParameter("must be 1 to 200 characters", param_hint="'NAME'")
    if budget_period is not None and budget_usd is None:
        raise click.UsageError("--budget-period needs --budget-usd")
    if expires_at is not None and expires_at <= datetime.now(UTC):
        raise click.BadParameter("must be in the future", param_hint="'--expires-at'")
    settings = source.settings(config_path)
    allowed = _check_routes(settings, routes, environment)
    key = new_key()
    with store_errors(), KeyStore.open(settings.store.url) as store:
        row = store.create(
            key_id=new_key_id(), name=name, prefix=display_prefix(key),
            secret_hash=hash_key(key), environment=environment, routes=allowed, rpm=rpm,
            tpm=tpm, max_concurrency=max_concurrency, budget_usd=budget_usd,
            budget_period=(budget_period or "month") if budget_usd is not None else None,
            expires_at=expires_at, actor=actor(), client=client(), priority=priority,
            role=role,
        )
    _print_new_key(row.id, key)


def _check_routes(
    settings: Settings, routes: tuple[str, ...], environment: str
) -> tuple[str, ...] | None:
    """The routes a new key names, each known and of the key's environment."""
    for route in routes:
        problem = key_route_problem(settings.routes, route, environment,
                                    settings.tensor_models())
        if problem is not None:
            raise click.BadParameter(f"{problem} (in {settings.source})",
                                     param_hint="'--route'")
    return tuple(dict.fromkeys(routes)) or None


def _print_new_key(key_id: str, key: str) -> None:
    click.echo(f"id:  {key_id}")
    click.echo(f"key: {key}")
    click.echo("Store this key now: it will not be shown again (only its hash is kept).",
               err=True)


@click.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON array instead of a table.")
@config_option
@click.pass_obj
def list_keys(source: ConfigSource, as_json: bool, config_path: str | None) -> None:
    """List every key, without secrets."""
    url = source.settings(config_path).store.url
    with store_errors(), KeyStore.open(url) as store, UsageStore.open(url) as usage:
        rows = store.list_keys()
        last_used = usage.last_used_by_key()
    if as_json:
        click.echo(json.dumps([_key_json(r, last_used.get(r.id)) for r in rows], indent=2))
    elif not rows:
        click.echo("No keys yet: create one with `modelport keys create NAME`.")
    else:
        click.echo(table(
            ("ID", "NAME", "PREFIX", "ENV", "ROUTES", "LIMITS", "BUDGET", "CREATED",
             "EXPIRES", "REVOKED", "LAST USED"),
            [_key_cells(r, last_used.get(r.id)) for r in rows],
        ))


def _limits(row: KeyRow) -> str:
    parts = [f"{label}={value}" for label, value in
             (("rpm", row.rpm), ("tpm", row.tpm), ("concurrency", row.max_concurrency))
             if value is not None]
    return " ".join(parts) or "-"


def _budget_text(row: KeyRow) -> str:
    return "-" if row.budget_usd is None else f"${row.budget_usd:.2f}/{row.budget_period}"


def _key_cells(row: KeyRow, last_used: datetime | None) -> list[str]:
    routes = "*" if row.routes is None else ",".join(row.routes)
    return [row.id, row.name, row.prefix, row.environment, routes, _limits(row),
            _budget_text(row), stamp(row.created_at), stamp(row.expires_at),
            stamp(row.revoked_at), stamp(last_used)]


def _key_json(row: KeyRow, last_used: datetime | None) -> dict[str, Any]:
    def iso(value: datetime | None) -> str | None:
        return None if value is None else value.isoformat()

    return {
        "id": row.id, "name": row.name, "prefix": row.prefix, "environment": row.environment,
        "routes": None if row.routes is None else list(row.routes), "rpm": row.rpm,
        "tpm": row.tpm, "max_concurrency": row.max_concurrency, "budget_usd": row.budget_usd,
        "budget_period": row.budget_period, "created_at": iso(row.created_at),
        "expires_at": iso(row.expires_at), "revoked_at": iso(row.revoked_at),
        "last_used_at": iso(last_used),
    }


@click.command("revoke")
@click.argument("key_id")
@config_option
@click.pass_obj
def revoke(source: ConfigSource, key_id: str, config_path: str | None) -> None:
    """Revoke KEY_ID: every secret of it stops working."""
    url = source.settings(config_path).store.url
    with store_errors(), KeyStore.open(url) as store:
        before = store.get(key_id)
        row = store.revoke(key_id, actor=actor(), client=client())
    if row is None:
        click.echo(f"modelport: no key with id {key_id!r}", err=True)
        sys.exit(EXIT_NOT_FOUND)
    if before is not None and before.revoked_at is not None:
        click.echo(f"{row.id} ({row.name}) was already revoked at {stamp(row.revoked_at)} UTC.")
    else:
        click.echo(f"Revoked {row.id} ({row.name}).")


@click.command("rotate")
@click.argument("key_id")
@click.option("--grace-seconds", type=click.IntRange(0, 365 * 86400), default=0,
              show_default=True, help="How long the old secret keeps working.")
@config_option
@click.pass_obj
def rotate(source: ConfigSource, key_id: str, grace_seconds: int,
           config_path: str | None) -> None:
    """Give KEY_ID a new secret and print it, once."""
    url = source.settings(config_path).store.url
    key = new_key()
    grace = datetime.now(UTC) + timedelta(seconds=grace_seconds) if grace_seconds else None
    with store_errors(), KeyStore.open(url) as store:
        row = store.rotate(key_id, new_hash=hash_key(key), new_prefix=display_prefix(key),
                           grace_until=grace, actor=actor(), client=client())
        missing = row is None and store.get(key_id) is None
    if row is None:
        reason = "no key with id" if missing else "cannot rotate the revoked key"
        click.echo(f"modelport: {reason} {key_id!r}", err=True)
        sys.exit(EXIT_NOT_FOUND)
    _print_new_key(row.id, key)
    until = "now" if grace is None else f"at {stamp(grace)} UTC"
    click.echo(f"The previous secret stops working {until}.", err=True)
