"""What the operator commands share: the inventory option, JSON/table output, exit codes.

This is the edge: it may read the environment (Click envvars, PATH for Ansible's tools).
"""

from __future__ import annotations

import importlib.resources
import json
import os
import pathlib
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:  # rich is imported when a table is printed: `--json` does not pay for it
    from rich.console import Console
    from rich.table import Table

    from ...deploy.inventory import Inventory
    from ...deploy.results import GroupResult

SHIPPED_INVENTORIES = ("local", "example")


def console() -> Console:
    from rich.console import Console

    # piped output (CI logs, `| less`) gets a wide table rather than rich's 80-column default
    return Console(highlight=False, width=None if sys.stdout.isatty() else 200)


def err_console() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 200)


def inventory_path(value: str) -> pathlib.Path:
    """A path to an inventory, or the name of a shipped one (``local``, ``example``)."""
    path = pathlib.Path(value).expanduser()
    if path.exists():
        return path
    if value in SHIPPED_INVENTORIES:
        shipped = importlib.resources.files("jinad_fab").joinpath("assets", "inventories", value)
        if isinstance(shipped, pathlib.Path) and shipped.is_dir():
            return shipped
    raise click.BadParameter(f"{value!r} is neither an inventory path nor one of {', '.join(SHIPPED_INVENTORIES)}",
                             param_hint="-i/--inventory")


def inventory_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--vault-password-file", envvar="ANSIBLE_VAULT_PASSWORD_FILE", default=None,
                      type=click.Path(dir_okay=False, exists=True),
                      help="decrypts vaulted inventory vars (e.g. jinad_token)")(fn)
    return click.option("-i", "--inventory", "inventory", envvar="JINAD_FAB_INVENTORY", default="local",
                        show_default=True, metavar="INV",
                        help="inventory path, or a shipped one: local, example")(fn)


def load_inventory(value: str, vault_password_file: str | None = None) -> Inventory:
    from ..inventory_cache import load

    return load(inventory_path(value), vault_password_file)


def json_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")(fn)


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Table:
    from rich.table import Table

    t = Table(title=title, title_justify="left", show_lines=False)
    for col in columns:
        t.add_column(col, overflow="fold")
    for row in rows:
        t.add_row(*("" if v is None else str(v) for v in row))
    return t


def tool_env() -> dict[str, str]:
    """Environment additions for Ansible: this interpreter's bin (ansible-playbook) first on PATH."""
    bindir = str(pathlib.Path(sys.executable).parent)
    return {"PATH": bindir + os.pathsep + os.environ.get("PATH", os.defpath)}


def finish(result: GroupResult[Any], what: str) -> None:
    """Exit 0 when every host succeeded; otherwise DeployError (2) or HostsUnreachable (4)."""
    result.raise_for_failures(what)


def status_markup(ok: bool, unreachable: bool = False) -> str:
    if ok:
        return "[green]ok[/green]"
    return "[red]unreachable[/red]" if unreachable else "[red]failed[/red]"
