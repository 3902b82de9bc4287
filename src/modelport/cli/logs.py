"""``modelport logs``: the request ledger from the command line, as ``/admin/requests``
shows it: a page of requests with filters, or one request in full (``--id``)."""

from __future__ import annotations

import json
from typing import Any

import click

from modelport.cli.keys import ConfigSource, config_option, store_errors, table
from modelport.errors import RequestError
from modelport.protocol.admin import parse_status, parse_time
from modelport.store.requests import RequestFilter, RequestStore


def command() -> click.Command:
    """The ``logs`` command."""

    @click.command("logs", context_settings={"obj": ConfigSource()})
    @click.option("--id", "request_id", default=None, help="One request, in full.")
    @click.option("--route", default=None)
    @click.option("--key", "key_id", default=None, help="A key id (key_...).")
    @click.option("--status", default=None, help="A status (404) or a class (5xx).")
    @click.option("--since", default=None, help="ISO-8601 time, or a time ago: 15m, 2h, 7d.")
    @click.option("--until", default=None, help="ISO-8601 time, or a time ago.")
    @click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 500))
    @click.option("--json", "as_json", is_flag=True, help="JSON instead of a table.")
    @config_option
    @click.pass_obj
    def logs(source: ConfigSource, request_id: str | None, route: str | None,
             key_id: str | None, status: str | None, since: str | None, until: str | None,
             limit: int, as_json: bool, config_path: str | None) -> None:
        """Requests from the ledger, newest first."""
        settings = source.settings(config_path)
        try:
            where = _filter(route, key_id, status, since, until)
        except RequestError as exc:
            raise click.UsageError(exc.message) from None
        with store_errors(), RequestStore.open(settings.store.url) as store:
            if request_id is not None:
                found = store.get(request_id)
                if found is None:
                    raise click.ClickException(f"no request '{request_id}' in the ledger")
                click.echo(json.dumps(found, indent=2))
                return
            rows, _ = store.page(where, limit)
        if as_json:
            click.echo(json.dumps(rows, indent=2))
        elif not rows:
            click.echo("No requests match.")
        else:
            click.echo(table(_HEADERS, [_cells(r) for r in rows]))

    return logs


_HEADERS = ("TIME (UTC)", "REQUEST ID", "ROUTE", "TARGET", "STATUS", "MS", "TOKENS", "COST USD",
            "ERROR")


def _filter(route: str | None, key_id: str | None, status: str | None, since: str | None,
            until: str | None) -> RequestFilter:
    exact, status_class = parse_status(status, "--status") if status else (None, None)
    return RequestFilter(
        route=route, key_id=key_id, status=exact, status_class=status_class,
        since=parse_time(since, "--since") if since else None,
        until=parse_time(until, "--until") if until else None,
    )


def _cells(row: dict[str, Any]) -> list[str]:
    tokens = (row["prompt_tokens"] or 0) + (row["completion_tokens"] or 0)
    return [
        str(row["created_at"])[:19].replace("T", " "), row["request_id"], row["route"] or "-",
        row["target"] or "-", str(row["status"]), f"{row['latency_ms']:.1f}",
        str(tokens) if row["prompt_tokens"] is not None else "-",
        f"{row['cost_usd']:.6f}" if row["cost_usd"] is not None else "-",
        row["error_code"] or "",
    ]
