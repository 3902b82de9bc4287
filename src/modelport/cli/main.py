"""``modelport serve`` and ``modelport config validate``.

Configuration problems are printed one per line with their key paths and exit with status
2, before any socket is opened: never a traceback, never a half-started server.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn

import click

from modelport import __version__
from modelport.cli.keys import keys_group
from modelport.cli.logs import logs_command
from modelport.cli.usage import usage_command
from modelport.config import Settings, load_settings
from modelport.errors import ConfigError

DEFAULT_CONFIG = "modelport.yaml"
EXIT_CONFIG = 2


def _config_failure(path: str, exc: ConfigError) -> NoReturn:
    click.echo(f"modelport: {path} is not a valid configuration:", err=True)
    for problem in exc.problems:
        click.echo(f"  {problem}", err=True)
    sys.exit(EXIT_CONFIG)


def _load_or_exit(path: str) -> Settings:
    try:
        return load_settings(path)
    except ConfigError as exc:
        _config_failure(path, exc)


@click.group()
@click.version_option(__version__, prog_name="modelport")
def main() -> None:
    """Modelport: one governed, OpenAI-compatible endpoint in front of your models."""


def _offline_default(host: str, port: int) -> Settings:
    """The built-in configuration: local models only, SQLite under ./.modelport/."""
    import subprocess

    from modelport.config.defaults import HOME, Extras, default_config, describe
    from modelport.config.load import load_data

    extras = Extras.detect()
    data = default_config(extras)
    HOME.mkdir(exist_ok=True)
    if extras.tensor:
        repository = HOME / "models"
        repository.mkdir(exist_ok=True)
        trained = subprocess.run(
            [sys.executable, "-m", "modelport.runtimes.iris", str(repository)],
            capture_output=True, text=True, check=False)
        if trained.returncode != 0:
            click.echo(f"modelport: could not train the Iris model: {trained.stderr.strip()}",
                       err=True)
    try:
        settings = load_data(data, source="<offline default>")
    except ConfigError as exc:
        _config_failure("the offline default configuration", exc)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    click.echo(f"modelport: no {DEFAULT_CONFIG} here; serving local models, offline, on "
               f"http://{shown}:{port} (ledger in {HOME}/):", err=True)
    for line in describe(data, f"http://{shown}:{port}"):
        click.echo(line, err=True)
    return settings


@main.command()
@click.option("--config", "config_path", default=None,
              help=f"The YAML configuration file [default: ./{DEFAULT_CONFIG}; without it, "
                   "the offline default with local models].")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=4000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--log-level", default=None,
              type=click.Choice(["debug", "info", "warning", "error"]),
              help="Overrides server.log_level from the config.")
def serve(config_path: str | None, host: str, port: int, log_level: str | None) -> None:
    """Start the server."""
    if config_path is None and not Path(DEFAULT_CONFIG).exists():
        settings = _offline_default(host, port)
        config_path = "the offline default configuration"
    else:
        config_path = config_path or DEFAULT_CONFIG
        settings = _load_or_exit(config_path)
    from modelport.cli.server import run

    try:
        run(settings, host=host, port=port, log_level=log_level or settings.server.log_level)
    except ConfigError as exc:
        _config_failure(config_path, exc)


@main.group()
def config() -> None:
    """Work with configuration files."""


@config.command("validate")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def validate(path: Path) -> None:
    """Check a config file and print every problem with its key path."""
    settings = _load_or_exit(str(path))
    click.echo(
        f"{path}: valid (config version {settings.config_version}, "
        f"{len(settings.providers)} providers, {len(settings.routes)} routes)"
    )


main.add_command(keys_group(_load_or_exit, DEFAULT_CONFIG))
main.add_command(usage_command(_load_or_exit, DEFAULT_CONFIG))
main.add_command(logs_command(_load_or_exit, DEFAULT_CONFIG))

if __name__ == "__main__":  # pragma: no cover
    main()
