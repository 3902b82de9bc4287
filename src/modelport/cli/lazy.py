"""A click group whose commands are imported only when one of them runs.

Each command module pulls in what it needs (the store's SQLAlchemy, pydantic for the
config, uvicorn): imported up front they cost every invocation, ``--help`` included, about
half a second. Here a command is named by ``module:factory`` with its one-line help, so that
listing them imports nothing.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

import click


class LazyGroup(click.Group):
    def __init__(self, *args: Any, lazy: Mapping[str, tuple[str, str]], **kwargs: Any) -> None:
        """``lazy`` maps a command name to (``"module:attribute"``, one-line help): the
        attribute is the command, or a function of no arguments that makes it."""
        super().__init__(*args, **kwargs)
        self._lazy = dict(lazy)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self._lazy and cmd_name not in self.commands:
            target, _ = self._lazy[cmd_name]
            module, _, attribute = target.partition(":")
            found: click.Command | Callable[[], click.Command] = getattr(
                importlib.import_module(module), attribute)
            self.add_command(found if isinstance(found, click.Command) else found(), cmd_name)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            if name in self._lazy and name not in self.commands:
                rows.append((name, self._lazy[name][1]))
            else:
                command = self.commands[name]
                if not command.hidden:
                    rows.append((name, command.get_short_help_str(formatter.width)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)
