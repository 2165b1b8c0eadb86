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
    return click.option("--json", "as_json", is_flag=True, help="print the result as JSON")(fn)


# ---- one vocabulary: -l/--limit, --forks, -n/--tail, an Examples section ------------------------


def deprecated_alias(*decls: str, dest: str, use: str, **attrs: Any) -> Callable[..., Any]:
    """A hidden old spelling of option ``dest``: it still works and says once which spelling to use.

    The alias has a parameter name of its own (so using the new spelling never triggers the
    notice); when given, it fills ``dest`` as if the new spelling had been used.
    """

    def store(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        if value is None or ctx.resilient_parsing:
            return
        used = "/".join(decls)
        click.echo(f"jinad-fab: {used} is deprecated and will be removed; use {use}", err=True)
        ctx.params[dest] = value
        ctx.set_parameter_source(dest, click.core.ParameterSource.COMMANDLINE)

    name = "deprecated_" + dest + "_" + decls[-1].lstrip("-").replace("-", "_")
    return click.option(*decls, name, hidden=True, expose_value=False, default=None, callback=store, **attrs)


def limit_option(fn: Callable[..., Any] | None = None, *, old_group_flag: bool = False) -> Any:
    """``-l/--limit PATTERN``: an Ansible host pattern (``gpu``, ``gpu[0]``, ``cpu[0:1]``, ``~re``,
    ``all:!gpu-2``), resolved by ansible-core exactly as ``ansible-playbook -l`` resolves it."""

    def wrap(f: Callable[..., Any]) -> Callable[..., Any]:
        if old_group_flag:
            f = deprecated_alias("-g", "--group", dest="limit", use="-l/--limit", metavar="PATTERN")(f)
        return click.option("-l", "--limit", "limit", default=None, metavar="PATTERN",
                            help="only hosts matching this Ansible host pattern, e.g. gpu, gpu[0], "
                                 "cpu[0:1], ~gpu-\\d+, all:!gpu-2 [all]")(f)

    return wrap(fn) if fn is not None else wrap


def forks_option(fn: Callable[..., Any] | None = None, *, default: int | None = 10,
                 old_parallel_flag: bool = False) -> Any:
    """``--forks N``: how many hosts are worked on at the same time (Ansible's word)."""

    def wrap(f: Callable[..., Any]) -> Callable[..., Any]:
        if old_parallel_flag:
            f = deprecated_alias("-p", "--parallel", dest="forks", use="--forks",
                                 type=click.IntRange(1, 500))(f)
        return click.option("--forks", "forks", type=click.IntRange(1, 500), default=default,
                            show_default=default is not None, help="hosts worked on at the same time")(f)

    return wrap(fn) if fn is not None else wrap


def tail_option(fn: Callable[..., Any] | None = None, *, default: int | None = None,
                old_lines_flag: bool = False, per: str = "") -> Any:
    """``-n/--tail N``: only the last N log lines (``docker logs``' spelling)."""

    def wrap(f: Callable[..., Any]) -> Callable[..., Any]:
        if old_lines_flag:
            f = deprecated_alias("--lines", dest="tail", use="-n/--tail", type=click.IntRange(0))(f)
        return click.option("-n", "--tail", "tail", type=click.IntRange(0), default=default,
                            show_default=default is not None, metavar="N",
                            help=f"only the last N lines{per} [all]" if default is None else
                            f"only the last N lines{per}")(f)

    return wrap(fn) if fn is not None else wrap


def examples(*lines: str) -> Callable[[click.Command], click.Command]:
    """Give a command's ``--help`` an Examples section (each line: a command, then ``#`` and why)."""

    def wrap(cmd: click.Command) -> click.Command:
        cmd.epilog = "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)
        return cmd

    return wrap


def ssh_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """What the SSH fan-outs (exec, push, logs) share: inventory, -l, --forks, connect timeout."""
    fn = click.option("--connect-timeout", type=float, default=10.0, show_default=True,
                      help="seconds to wait for each host's SSH server")(fn)
    fn = forks_option(fn, default=10, old_parallel_flag=True)
    fn = limit_option(fn, old_group_flag=True)
    return inventory_option(fn)


def print_ndjson(data: Any) -> None:
    """One JSON object per line (streams: log lines), flushed so a pipe sees it at once."""
    click.echo(json.dumps(data, default=str, separators=(",", ":")))


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]],
          whole: Sequence[str] = ()) -> Table:
    """A table; the ``whole`` columns (ids) are never wrapped, folded or cut, the others fold."""
    from rich.table import Table

    rows = [tuple("" if v is None else str(v) for v in row) for row in rows]
    t = Table(title=title, title_justify="left", show_lines=False)
    for col in columns:
        if col in whole:
            t.add_column(col, no_wrap=True)
        else:
            t.add_column(col, overflow="fold")
    for row in rows:
        t.add_row(*row)
    return t


def print_table(t: Table, out: Console | None = None) -> None:
    """Print ``t`` at its natural width even when the terminal is narrower (the terminal wraps the
    lines, as with ``docker ps --no-trunc``): ids stay whole and can be copied."""
    from rich.console import Console
    from rich.measure import Measurement

    out = out or console()
    needed = Measurement.get(out, out.options.update_width(100_000), t).maximum
    if needed > out.width:
        out = Console(highlight=False, width=needed, file=out.file, force_terminal=out.is_terminal)
    out.print(t)


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
