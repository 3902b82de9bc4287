"""Where a command finds its settings: the file it is given, ``./modelport.yaml``, or the
offline default that ``modelport serve`` falls back to, so that every command reads the
store ``serve`` would use in this folder. Configuration problems print one per line with
their key paths and exit with status 2: never a traceback."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn

import click

from modelport.config import Settings, load_settings
from modelport.config.defaults import HOME, Extras, default_config
from modelport.config.load import load_data
from modelport.errors import ConfigError

DEFAULT_CONFIG = "modelport.yaml"
EXIT_CONFIG = 2
EXIT_START = 3  # the server cannot start: a port in use, a folder or store it cannot use
OFFLINE_DEFAULT = "the offline default configuration"


def config_failure(path: str, exc: ConfigError) -> NoReturn:
    click.echo(f"modelport: {path} is not a valid configuration:", err=True)
    for problem in exc.problems:
        click.echo(f"  {problem}", err=True)
    sys.exit(EXIT_CONFIG)


def load_or_exit(path: str) -> Settings:
    try:
        return load_settings(path)
    except ConfigError as exc:
        config_failure(path, exc)


def offline_default(extras: Extras) -> Settings:
    """The built-in configuration (local models only, SQLite under ./.modelport/), its
    folders made; a folder that cannot be made is one plain line and exit status 3."""
    try:
        HOME.mkdir(exist_ok=True)
        if extras.tensor:
            (HOME / "models").mkdir(exist_ok=True)
    except OSError as exc:
        click.echo(f"modelport: cannot write to {HOME}/ in this folder: "
                   f"{exc.strerror or exc}", err=True)
        sys.exit(EXIT_START)
    try:
        return load_data(default_config(extras), source="<offline default>")
    except ConfigError as exc:
        config_failure(OFFLINE_DEFAULT, exc)


def settings_serve_would_use(path: str | None) -> Settings:
    """``path``; else ``./modelport.yaml``; else, when there is none, the offline default
    (its store in ./.modelport/)."""
    if path is None:
        if not Path(DEFAULT_CONFIG).exists():
            return offline_default(Extras.detect())
        path = DEFAULT_CONFIG
    return load_or_exit(path)
