"""``modelport usage``: requests, tokens and cost per key or route for the current UTC day
or month, read from the request ledger. No SQL here: ``modelport.store`` does it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Literal

import click

from modelport.cli.keys import ConfigSource, config_option, store_errors, table
from modelport.config import Settings
from modelport.store import KeyStore, UsageRow, UsageStore


def period_start(period: str, now: datetime) -> datetime:
    """The start of the UTC day or month that ``now`` falls in."""
    day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return day if period == "day" else day.replace(day=1)


def command() -> click.Command:
    """The ``usage`` command."""

    @click.command("usage", context_settings={"obj": ConfigSource()})
    @click.option("--by", type=click.Choice(["key", "route"]), default="key", show_default=True)
    @click.option("--period", type=click.Choice(["day", "month"]), default="month",
                  show_default=True, help="The current UTC day or month.")
    @click.option("--json", "as_json", is_flag=True, help="One JSON object instead of a table.")
    @config_option
    @click.pass_obj
    def usage(source: ConfigSource, by: Literal["key", "route"], period: str, as_json: bool,
              config_path: str | None) -> None:
        """Requests, tokens and cost per key or route for the current period."""
        _report(source.settings(config_path), by, period, as_json)

    return usage


def _report(settings: Settings, by: Literal["key", "route"], period: str, as_json: bool) -> None:
    since = period_start(period, datetime.now(UTC))
    url = settings.store.url
    with store_errors(), UsageStore.open(url) as store:
        rows = store.report(by, since, None)
        names = _key_names(url) if by == "key" else {}
    if as_json:
        click.echo(json.dumps({
            "by": by, "period": period, "since": since.isoformat(),
            "rows": [{"group": r.group, "name": names.get(r.group or ""),
                      "requests": r.requests, "prompt_tokens": r.prompt_tokens,
                      "completion_tokens": r.completion_tokens, "cost_usd": r.cost_usd}
                     for r in rows],
        }, indent=2))
        return
    click.echo(f"Usage by {by} since {since:%Y-%m-%d %H:%M} UTC")
    if not rows:
        click.echo("No requests in this period.")
        return
    click.echo(table(_headers(by), [_cells(r, names, by) for r in rows]))


def _key_names(url: str) -> dict[str, str]:
    with KeyStore.open(url) as keys:
        return {row.id: row.name for row in keys.list_keys()}


def _headers(by: str) -> tuple[str, ...]:
    group = ("KEY", "NAME") if by == "key" else ("ROUTE",)
    return (*group, "REQUESTS", "PROMPT TOKENS", "COMPLETION TOKENS", "COST USD")


def _cells(row: UsageRow, names: dict[str, str], by: str) -> list[str]:
    label = row.group or ("(no key)" if by == "key" else "(no route)")
    group = [label, names.get(row.group or "", "-")] if by == "key" else [label]
    return [*group, str(row.requests), str(row.prompt_tokens), str(row.completion_tokens),
            f"{row.cost_usd:.4f}"]
