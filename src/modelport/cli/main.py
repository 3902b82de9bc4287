"""The ``modelport`` command: ``serve``, ``init``, ``config validate``, the running server's
config versions (``config apply|rollback|history|diff|show``), and the store's commands
(``keys``, ``switch``, ``canary``, ``usage``, ``logs``), and batches on the running server
(``batch submit|status|results|cancel``).

Configuration problems are printed one per line with their key paths and exit with status
2, before any socket is opened: never a traceback, never a half-started server. Each command
imports what it needs when it runs (``cli.lazy``), so ``modelport --help`` costs no more than
click itself.
"""

from __future__ import annotations

from pathlib import Path

import click

from modelport import __version__
from modelport.cli.lazy import LazyGroup

_DEFAULT_CONFIG = "modelport.yaml"  # cli.source.DEFAULT_CONFIG, not imported for --help


@click.group(cls=LazyGroup, lazy={
    "keys": ("modelport.cli.keys:command",
             "Create, list, revoke and rotate API keys (kept, hashed, in the store)."),
    "usage": ("modelport.cli.usage:command", "Spend and tokens per key or per route."),
    "logs": ("modelport.cli.logs:command", "Recent requests from the ledger, or one in full."),
    "switch": ("modelport.cli.switch:command",
               "Turn everything, a route, a key, a provider or a model off and back on."),
    "canary": ("modelport.cli.canary:command",
               "Promote, abort or resume a route's canary, or list the canaries."),
    "init": ("modelport.cli.init:command", "Write a commented starter modelport.yaml."),
})
@click.version_option(__version__, prog_name="modelport")
def main() -> None:
    """Modelport: one governed, OpenAI-compatible endpoint in front of your models."""


@main.command()
@click.option("--config", "config_path", default=None,
              help=f"The YAML configuration file [default: ./{_DEFAULT_CONFIG}; without it, "
                   "the offline default with local models].")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=4000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--log-level", default=None,
              type=click.Choice(["debug", "info", "warning", "error"]),
              help="Overrides server.log_level from the config.")
def serve(config_path: str | None, host: str, port: int, log_level: str | None) -> None:
    """Start the server."""
    from modelport.cli.server import serve_command

    serve_command(config_path, host, port, log_level)


@main.group(cls=LazyGroup, lazy={
    "apply": ("modelport.cli.config_versions:apply",
              "Put a config file in force on the running server, without a restart."),
    "rollback": ("modelport.cli.config_versions:rollback",
                 "Put a kept config version in force again."),
    "history": ("modelport.cli.config_versions:history",
                "The config versions kept, newest first."),
    "diff": ("modelport.cli.config_versions:diff", "What changed between two config versions."),
    "show": ("modelport.cli.config_versions:show", "A kept config version's text."),
})
def config() -> None:
    """Validate configuration files; apply, list, compare and roll back config versions on
    the running server."""


@config.command("validate")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def validate(path: Path) -> None:
    """Check a config file and print every problem with its key path."""
    from modelport.cli.source import load_or_exit

    settings = load_or_exit(str(path))
    click.echo(
        f"{path}: valid (config version {settings.config_version}, "
        f"{len(settings.providers)} providers, {len(settings.routes)} routes)"
    )


@main.group(cls=LazyGroup, lazy={
    "submit": ("modelport.cli.batch:submit",
               "Upload a JSON Lines file and run it as a batch (--wait: progress, results)."),
    "status": ("modelport.cli.batch:status", "A batch's status and counts."),
    "results": ("modelport.cli.batch:results", "Write a batch's output and error files."),
    "cancel": ("modelport.cli.batch:cancel", "Stop running a batch's lines."),
})
def batch() -> None:
    """Batches on the running server (MODELPORT_URL; the key in MODELPORT_API_KEY)."""


if __name__ == "__main__":  # pragma: no cover
    main()
