"""One set of exit codes for `jinad-fab` and `jinad` (see :mod:`jinad_fab.errors`).

0 fine, 1 usage, 2 failed, 4 unreachable. Click ends its own usage errors with 2 and any other
``ClickException`` with 1; these classes give usage errors 1 and every
:class:`~jinad_fab.errors.JinadFabError` its class's ``exit_code``.
"""

from __future__ import annotations

from typing import Any

import click

from ..errors import EXIT_USAGE, JinadFabError


class CliError(click.ClickException):
    """A JinadFabError on its way out: message to stderr, exit code from the error's class."""

    def __init__(self, exc: JinadFabError):
        super().__init__(str(exc))
        self.exit_code = exc.exit_code


class _ExitCodes:
    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)  # type: ignore[misc]
        except click.UsageError as exc:  # `jinad-fab --bogus`, `jinad --port x`
            exc.exit_code = EXIT_USAGE
            raise

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)  # type: ignore[misc]
        except click.UsageError as exc:  # a subcommand's missing or bad option, or one the command refused
            exc.exit_code = EXIT_USAGE
            raise
        except JinadFabError as exc:
            raise CliError(exc) from exc


class Group(_ExitCodes, click.Group):
    """A command group whose commands exit with the shared codes."""


class Command(_ExitCodes, click.Command):
    """A single command that exits with the shared codes."""
