"""``modelport config apply|rollback|history|diff|show``: config versions on a running server.

These talk to the server's admin API (``/admin/config``), so that a config is validated
where it will run, against that server's environment and secret files, and put in force
there without a restart. The server is ``--url`` (or ``MODELPORT_URL``; by default
``http://127.0.0.1:4000``) and the admin key is ``MODELPORT_ADMIN_KEY``. A config that does
not validate prints every problem with its key path and exits with status 2; the running
config stays.
"""

from __future__ import annotations

import getpass
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, NoReturn

import click

from modelport.cli.keys import table
from modelport.config.load import admin_key_in_environment

DEFAULT_URL = "http://127.0.0.1:4000"
EXIT_FAILED, EXIT_CONFIG = 1, 2
_TIMEOUT_S = 60.0


def _url_option(func: Any) -> Any:
    return click.option(
        "--url", envvar="MODELPORT_URL", default=DEFAULT_URL, show_default=True,
        help="The running server (or MODELPORT_URL).")(func)


def _fail(message: str, status: int = EXIT_FAILED) -> NoReturn:
    click.echo(f"modelport: {message}", err=True)
    sys.exit(status)


def _user() -> str:
    try:
        return "cli:" + getpass.getuser()
    except (OSError, KeyError):
        return "cli"


def call(url: str, method: str, path: str, body: bytes | None = None,
         content_type: str = "application/json") -> Any:
    """One admin API call; its JSON answer, or one line on stderr and an exit status."""
    key = admin_key_in_environment()
    if key is None:
        _fail("set MODELPORT_ADMIN_KEY to the server's admin key")
    request = urllib.request.Request(url.rstrip("/") + path, data=body, method=method,
                                     headers={"Authorization": f"Bearer {key.reveal()}",
                                              "Content-Type": content_type,
                                              "X-Modelport-Actor": _user()[:64]})
    try:
        with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            error = json.loads(exc.read()).get("error", {})
        except ValueError:
            error = {}
        if error.get("problems"):
            click.echo(f"modelport: {error.get('message', 'the config was not applied')}",
                       err=True)
            for problem in error["problems"]:
                click.echo(f"  {problem}", err=True)
            sys.exit(EXIT_CONFIG)
        _fail(f"{exc.code}: {error.get('message') or exc.reason}",
              EXIT_CONFIG if exc.code in (400, 404) else EXIT_FAILED)
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        _fail(f"cannot reach the server at {url} ({reason}); is it running? (--url)")


def _changed(changes: dict[str, dict[str, list[str]]]) -> list[str]:
    return [f"  {kind} {what}: {', '.join(names)}" for kind, diff in changes.items()
            for what, names in diff.items() if names]


def _report(answer: dict[str, Any]) -> None:
    if answer["unchanged"]:
        click.echo(f"unchanged: config {answer['config_version']} is already in force")
        return
    if answer["dry_run"]:
        click.echo(f"valid: config {answer['config_version']} would change:")
    else:
        version = answer["version"]
        click.echo(f"applied: version {version['number']} (config {answer['config_version']})")
    for line in _changed(answer["changes"]) or ["  nothing by name (settings within them)"]:
        click.echo(line)


@click.command("apply")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--reason", default="", help="Why, for the history and the audit log.")
@click.option("--dry-run", is_flag=True, help="Validate on the server, change nothing.")
@_url_option
def apply(path: Path, reason: str, dry_run: bool, url: str) -> None:
    """Put the config in PATH in force on the running server, without a restart."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        _fail(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}", EXIT_CONFIG)
    query = urllib.parse.urlencode({"reason": reason, "dry_run": str(dry_run).lower()})
    _report(call(url, "PUT", f"/admin/config?{query}", text.encode(), "application/yaml"))


@click.command("rollback")
@click.argument("version")
@click.option("--reason", default="", help="Why, for the history and the audit log.")
@_url_option
def rollback(version: str, reason: str, url: str) -> None:
    """Put a kept VERSION (its number, or its hash) in force again, as a new version."""
    body = json.dumps({"version": version, "reason": reason}).encode()
    _report(call(url, "POST", "/admin/config/rollback", body))


@click.command("history")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000))
@click.option("--json", "as_json", is_flag=True, help="One JSON array instead of a table.")
@_url_option
def history(limit: int, as_json: bool, url: str) -> None:
    """The config versions kept, newest first; * marks the one in force."""
    answer = call(url, "GET", f"/admin/config/versions?limit={limit}")
    rows = answer["data"]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("No config version is kept yet.")
        return
    click.echo(table(["", "VERSION", "CONFIG", "APPLIED", "BY", "HOW", "REASON"], [
        ["*" if r["number"] == answer["current"] else "", str(r["number"]),
         r["config_version"], r["applied_at"][:19].replace("T", " "), r["actor"],
         r["action"] + (f" to {r['restores']}" if r["restores"] else ""), r["reason"]]
        for r in rows]))


@click.command("diff")
@click.argument("old")
@click.argument("new", required=False)
@_url_option
def diff(old: str, new: str | None, url: str) -> None:
    """What changed from version OLD to version NEW (by default, the one in force)."""
    query = {"from": old, **({"to": new} if new else {})}
    answer = call(url, "GET", "/admin/config/diff?" + urllib.parse.urlencode(query))
    click.echo(answer["diff"] or f"versions {answer['from']} and {answer['to']} are the same",
               nl=not answer["diff"])


@click.command("show")
@click.argument("version", required=False)
@_url_option
def show(version: str | None, url: str) -> None:
    """A kept VERSION's text (by default, the one in force)."""
    path = "/admin/config" if version is None else \
        f"/admin/config/versions/{urllib.parse.quote(version, safe='')}"
    answer = call(url, "GET", path)
    if answer.get("text") is None:
        _fail(f"the config in force ({answer['config_version']}) was not kept in the store")
    click.echo(answer["text"], nl=False)

