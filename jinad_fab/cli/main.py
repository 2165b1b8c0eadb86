"""`jinad-fab`: the operator CLI. Every JinadFabError becomes its message and its class's exit code.

Exit codes, the same in every command (:mod:`jinad_fab.errors`): 0 fine, 1 usage (Click's own
usage errors included, which Click alone would end with 2), 2 failed, 4 unreachable.
"""

from __future__ import annotations

import importlib
import sys

import click

from .. import __version__
from .exits import Group

# Each module in cli/commands defines `command` (a click.Command or Group) that is added here.
# Modules are imported lazily-by-list so a missing optional extra only disables its command.
COMMAND_MODULES = [
    "jinad_fab.cli.commands.demo",
    "jinad_fab.cli.commands.flow",
    "jinad_fab.cli.commands.pod",
    "jinad_fab.cli.commands.ping",
    "jinad_fab.cli.commands.hello",
    "jinad_fab.cli.commands.render",
    "jinad_fab.cli.commands.provision",
    "jinad_fab.cli.commands.hosts",
    "jinad_fab.cli.commands.exec_",
    "jinad_fab.cli.commands.push",
    "jinad_fab.cli.commands.logs",
    "jinad_fab.cli.commands.flow_fleet",
]


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="jinad-fab")
def cli() -> None:
    """Run neural-search Flows across your GPU and CPU hosts.

    Start with `jinad-fab demo` (a local Flow, offline) or `jinad-fab hello`.
    """


def _register() -> None:
    for name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(name)
        except ImportError as exc:  # an optional extra is not installed
            missing = exc.name or str(exc)

            @cli.command(name.rsplit(".", 1)[-1].replace("_", "-"), hidden=False,
                         help=f"(unavailable: {missing} is not installed)")
            def _unavailable(_missing: str = missing) -> None:
                raise click.ClickException(f"this command needs {_missing}; try: pip install 'jinad-fab[all]'")
            continue
        cli.add_command(mod.command)


def main(argv: list[str] | None = None) -> None:
    _register()
    cli.main(args=argv if argv is not None else sys.argv[1:], prog_name="jinad-fab")


if __name__ == "__main__":
    main()
