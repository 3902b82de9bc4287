"""``modelport switch``: turn everything, a route, a key, a provider or a model off and on.

The change goes to the store with its audit entry; every server using that store applies it
within its key poll (a second by default) and keeps it across restarts. Bad input exits with
status 2 and a one-line reason naming the option, never a traceback.
"""

from __future__ import annotations

import json

import click

from modelport.cli.keys import (
    ConfigSource,
    actor,
    client,
    config_option,
    stamp,
    store_errors,
    table,
)
from modelport.config.settings import switch_problem
from modelport.policy.keys import CONFIG_KEY_PREFIX
from modelport.store import KeyStore, SwitchStore

_WHAT = [
    click.option("--all", "everything", is_flag=True, help="Every inference request."),
    click.option("--route", metavar="ROUTE", help="A route, or a tensor model by name."),
    click.option("--key", metavar="KEY_ID", help="Every request of one key (its id)."),
    click.option("--provider", metavar="PROVIDER", help="Every target on this provider."),
    click.option("--model", metavar="MODEL", help="Every target calling this model."),
]
_OPTIONS = {"all": "--all", "route": "--route", "key": "--key", "provider": "--provider",
            "model": "--model"}


def _what(func: click.decorators.FC) -> click.decorators.FC:
    for option in reversed(_WHAT):
        func = option(func)
    return func


def _scope(everything: bool, route: str | None, key: str | None, provider: str | None,
           model: str | None) -> tuple[str, str]:
    given = [(scope, value) for scope, value in (
        ("all", "" if everything else None), ("route", route), ("key", key),
        ("provider", provider), ("model", model)) if value is not None]
    if len(given) != 1:
        raise click.UsageError("give exactly one of --all, --route, --key, --provider and "
                               "--model")
    return given[0]


def command() -> click.Group:
    """The ``switch`` command group."""
    return click.Group(
        "switch", commands=[turn_off, turn_on, list_switches],
        help="Turn everything, a route, a key, a provider or a model off and back on.",
        context_settings={"obj": ConfigSource()},
    )


@click.command("off")
@_what
@click.option("--message", default="", help="What callers are told (refuse), or the text "
              "they are answered with (--answer).")
@click.option("--answer", "answer", is_flag=True,
              help="Answer every request with --message instead of refusing it.")
@click.option("--fallback", "fallback_route", metavar="ROUTE",
              help="Serve the requests by this route instead.")
@click.option("--reason", required=True, help="Why, for the audit log.")
@config_option
@click.pass_obj
def turn_off(source: ConfigSource, everything: bool, route: str | None, key: str | None,
             provider: str | None, model: str | None, message: str, answer: bool,
             fallback_route: str | None, reason: str, config_path: str | None) -> None:
    """Turn something off: refused with 503 `disabled` and --message, unless --answer or
    --fallback says otherwise."""
    scope, name = _scope(everything, route, key, provider, model)
    if answer and fallback_route is not None:
        raise click.UsageError("--answer and --fallback do not go together")
    behaviour = "answer" if answer else "fallback" if fallback_route is not None else "refuse"
    settings = source.settings(config_path)
    problem = switch_problem(settings, scope, name, behaviour, fallback_route, message)
    if problem is not None:
        hint = {"name": _OPTIONS[scope], "fallback_route": "--fallback",
                "message": "--message"}[problem[0]]
        raise click.BadParameter(f"{problem[1]} (in {settings.source})", param_hint=hint)
    with store_errors():
        if scope == "key":
            with KeyStore.open(settings.store.url) as keys:
                if keys.get(name) is None and name not in {
                        CONFIG_KEY_PREFIX + k for k in settings.keys}:
                    raise click.BadParameter(f"unknown key '{name}' (give its id)",
                                             param_hint="'--key'")
        with SwitchStore.open(settings.store.url) as store:
            store.turn_off(scope=scope, name=name, behaviour=behaviour, message=message,
                           fallback_route=fallback_route, reason=reason, actor=actor(),
                           client=client())
    click.echo(f"{scope}{':' + name if name else ''} is off ({behaviour})")


@click.command("on")
@_what
@click.option("--reason", default="", help="Why, for the audit log.")
@config_option
@click.pass_obj
def turn_on(source: ConfigSource, everything: bool, route: str | None, key: str | None,
            provider: str | None, model: str | None, reason: str,
            config_path: str | None) -> None:
    """Turn something back on."""
    scope, name = _scope(everything, route, key, provider, model)
    url = source.settings(config_path).store.url
    with store_errors(), SwitchStore.open(url) as store:
        was_off = store.turn_on(scope=scope, name=name, reason=reason, actor=actor(),
                                client=client())
    label = f"{scope}{':' + name if name else ''}"
    click.echo(f"{label} is on" if was_off else f"{label} was not off")


@click.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON array instead of a table.")
@config_option
@click.pass_obj
def list_switches(source: ConfigSource, as_json: bool, config_path: str | None) -> None:
    """The switches that are off."""
    url = source.settings(config_path).store.url
    with store_errors(), SwitchStore.open(url) as store:
        rows = store.list_switches()
    if as_json:
        click.echo(json.dumps([{
            "scope": r.scope, "name": r.name or None, "behaviour": r.behaviour,
            "message": r.message, "fallback_route": r.fallback_route, "reason": r.reason,
            "actor": r.actor, "since": r.created_at.isoformat()} for r in rows], indent=2))
        return
    if not rows:
        click.echo("Nothing is switched off.")
        return
    click.echo(table(["SCOPE", "NAME", "BEHAVIOUR", "SINCE", "BY", "REASON"], [
        [r.scope, r.name or "-", r.behaviour + (f" -> {r.fallback_route}"
                                                if r.fallback_route else ""),
         stamp(r.created_at), r.actor, r.reason] for r in rows]))
