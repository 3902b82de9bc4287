"""``modelport canary``: finish a route's canary by hand, or run it again, and list them.

``promote`` sends all of the route's traffic to its canary, ``abort`` none, ``resume`` runs
it again as configured (an empty window). The change goes to the store with its audit
entry; every server using that store applies it within its key poll (a second by default),
and keeps it across restarts. Bad input exits with status 2 and one line, never a traceback.
"""

from __future__ import annotations

import json
from typing import Any

import click

from modelport.cli.keys import ConfigSource, actor, client, config_option, store_errors
from modelport.cli.keys import table as render_table
from modelport.config import Settings
from modelport.store import CanaryStore

_STATES = {"promote": "promoted", "abort": "aborted", "resume": "running"}


def command() -> click.Group:
    """The ``canary`` command group."""
    return click.Group(
        "canary", commands=[_act("promote"), _act("abort"), _act("resume"), list_canaries],
        help="Promote, abort or resume a route's canary, or list the canaries.",
        context_settings={"obj": ConfigSource()},
    )


def _canary_target(settings: Settings, route: str) -> str:
    found = settings.routes.get(route)
    if found is None:
        raise click.BadParameter(f"unknown route '{route}' (in {settings.source})",
                                 param_hint="'ROUTE'")
    for target in found.targets:
        if target.canary is not None:
            return target.label
    raise click.BadParameter(f"route '{route}' has no canary (in {settings.source})",
                             param_hint="'ROUTE'")


def _act(action: str) -> click.Command:
    helps = {"promote": "Send all of ROUTE's traffic to its canary.",
             "abort": "Send none of ROUTE's traffic to its canary.",
             "resume": "Run ROUTE's canary again as configured, from an empty window."}

    @click.command(action, help=helps[action])
    @click.argument("route")
    @click.option("--reason", default="", help="Why, for the audit log.")
    @config_option
    @click.pass_obj
    def run(source: ConfigSource, route: str, reason: str, config_path: str | None) -> None:
        settings = source.settings(config_path)
        target = _canary_target(settings, route)
        with store_errors(), CanaryStore.open(settings.store.url) as store:
            store.set_state(route=route, target=target, state=_STATES[action],
                            reason=reason, actor=actor(), client=client())
        click.echo(f"{route}: canary {target} {_STATES[action]}")

    return run


@click.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON array instead of a table.")
@config_option
@click.pass_obj
def list_canaries(source: ConfigSource, as_json: bool, config_path: str | None) -> None:
    """Every route's canary with its state (running unless a server or an operator
    changed it)."""
    settings = source.settings(config_path)
    with store_errors(), CanaryStore.open(settings.store.url) as store:
        rows = {r.route: r for r in store.list_canaries()}
    found: list[dict[str, Any]] = []
    for route in settings.routes.values():
        for target in route.targets:
            if target.canary is not None:
                row = rows.get(route.name)
                stored = row is not None and row.target == target.label
                found.append({
                    "route": route.name, "target": target.label,
                    "percent": target.canary.percent,
                    "state": row.state if stored and row else "running",
                    "reason": row.reason if stored and row else "",
                    "since": row.at.isoformat() if stored and row else None,
                    "by": row.actor if stored and row else None})
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    if not found:
        click.echo("No route has a canary.")
        return
    click.echo(render_table(["ROUTE", "CANARY", "PERCENT", "STATE", "SINCE", "REASON"], [
        [c["route"], c["target"], f"{c['percent']:g}", c["state"],
         "-" if c["since"] is None else c["since"][:16].replace("T", " "),
         c["reason"]] for c in found]))
