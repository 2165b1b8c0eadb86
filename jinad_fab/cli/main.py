"""`jinad-fab`: the operator CLI. Every JinadFabError becomes its message and its class's exit code.

Exit codes, the same in every command (:mod:`jinad_fab.errors`): 0 fine, 1 usage (Click's own
usage errors included, which Click alone would end with 2), 2 failed, 4 unreachable.
"""

from __future__ import annotations

import contextlib
import importlib
import sys

import click

from .. import __version__
from .exits import Group

# Each command lives in a module of cli/commands that defines `command` (a click.Command or Group);
# a few modules add subcommands to another's group (the flow/ subpackage gathers its own).
# They are imported only when their command runs (or for --help and completion), so `jinad-fab
# hosts` does not pay for numpy, the Flow builder or Fabric; a missing optional extra only disables
# the commands that need it.
COMMANDS: dict[str, tuple[str, ...]] = {
    "demo": ("jinad_fab.cli.commands.demo",),
    "flow": ("jinad_fab.cli.commands.flow",),
    "pod": ("jinad_fab.cli.commands.pod",),
    "ping": ("jinad_fab.cli.commands.ping",),
    "hello": ("jinad_fab.cli.commands.hello",),
    "render": ("jinad_fab.cli.commands.render",),
    "provision": ("jinad_fab.cli.commands.provision",),
    "hosts": ("jinad_fab.cli.commands.hosts",),
    "exec": ("jinad_fab.cli.commands.ssh_exec",),
    "push": ("jinad_fab.cli.commands.push",),
    "logs": ("jinad_fab.cli.commands.logs",),
    "export": ("jinad_fab.cli.commands.export",),
}
COMMAND_MODULES = [m for mods in COMMANDS.values() for m in mods]


def _unavailable(name: str, missing: str) -> click.Command:
    def run() -> None:
        raise click.ClickException(f"this command needs {missing}; try: pip install 'jinad-fab[all]'")

    return click.Command(name, callback=run, help=f"(unavailable: {missing} is not installed)")


class LazyGroup(Group):
    """The top-level group: a command's module is imported the first time the command is asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            self.add_command(_load(cmd_name), cmd_name)
        return self.commands.get(cmd_name)


def _load(name: str) -> click.Command:
    first, *extra = COMMANDS[name]
    try:
        command = importlib.import_module(first).command
    except ImportError as exc:  # an optional extra is not installed
        return _unavailable(name, exc.name or str(exc))
    for module in extra:  # subcommands that need more extras: the group works without them
        with contextlib.suppress(ImportError):
            importlib.import_module(module)
    return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]},
             epilog="""\b
Examples:
  jinad-fab demo                                   # a local Flow, offline
  jinad-fab provision deploy -i prod               # install jinad on every host of an inventory
  jinad-fab hosts -i prod -l 'gpu[0]'              # Ansible host patterns select hosts everywhere
  jinad-fab flow up flow.yml -i prod               # a Flow spread over the inventory

\b
Shell completion (bash; zsh and fish likewise, see the README):
  eval "$(_JINAD_FAB_COMPLETE=bash_source jinad-fab)"
""")
@click.version_option(__version__, "-V", "--version", prog_name="jinad-fab")
def cli() -> None:
    """Run neural-search Flows across your GPU and CPU hosts.

    Start with `jinad-fab demo` (a local Flow, offline) or `jinad-fab hello`. Every command that
    works on many hosts takes -i INV and -l PATTERN (an Ansible host pattern), --forks N for how
    many at a time, and --json for output a script can read.
    """


def _register() -> None:
    """Load every command now (the group would load each on first use anyway)."""
    for name in COMMANDS:
        cli.get_command(click.Context(cli), name)


def main(argv: list[str] | None = None) -> None:
    # httpcore (under httpx) imports trio whenever it is installed, to support trio event loops;
    # jinad-fab runs none, and the import is a quarter of a short command's start-up (~110 ms of
    # CPU), so this process declares it absent. Only the `jinad-fab` process, never a library user's.
    sys.modules.setdefault("trio", None)  # type: ignore[arg-type]
    cli.main(args=argv if argv is not None else sys.argv[1:], prog_name="jinad-fab")


if __name__ == "__main__":
    main()
