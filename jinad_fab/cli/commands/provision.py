"""`jinad-fab provision deploy|teardown|upgrade|verify -i INV`: run the shipped playbooks."""

from __future__ import annotations

import pathlib

import click
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn

from ...deploy import wheelhouse
from ...deploy.playbooks import PlaybookRun, TaskEvent, run_playbook
from ._common import (
    console,
    err_console,
    finish,
    inventory_option,
    inventory_path,
    json_option,
    print_json,
    table,
    tool_env,
)


@click.group("provision")
def command() -> None:
    """Provision hosts with the shipped Ansible playbooks (per-host results; exit 2/4 on failures)."""


def _options(fn):
    fn = json_option(fn)
    fn = click.option("--timeout", type=int, default=None, help="seconds before the whole run is stopped")(fn)
    fn = click.option("-e", "--extra-var", "extra_vars", multiple=True, metavar="KEY=VALUE",
                      help="an Ansible extra var (repeatable)")(fn)
    fn = click.option("--forks", type=click.IntRange(1, 500), default=None, help="hosts in parallel")(fn)
    fn = click.option("--check", is_flag=True, help="dry run: report what would change")(fn)
    fn = click.option("-l", "--limit", default=None, help="only hosts matching this pattern")(fn)
    return inventory_option(fn)


def _extravars(pairs: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="-e/--extra-var")
        out[key] = value
    return out


def _run(name: str, inventory: str, limit, check, forks, extra_vars, timeout, as_json, extra=None) -> None:
    inv_path = inventory_path(inventory)
    extravars = {**_extravars(extra_vars), **(extra or {})}
    if as_json:
        run = run_playbook(name, inv_path, limit=limit, check=check, forks=forks, extravars=extravars,
                           timeout=timeout, env=tool_env())
        print_json(run.as_dict())
    else:
        run = _run_with_progress(name, inv_path, limit, check, forks, extravars, timeout)
        _print_recap(run)
    finish(run.hosts, f"{name}.yml")


def _run_with_progress(name, inv_path, limit, check, forks, extravars, timeout) -> PlaybookRun:
    progress = Progress(SpinnerColumn(), TextColumn("[bold]{task.fields[host]}"), BarColumn(bar_width=None),
                        TextColumn("{task.completed} tasks"), TextColumn("{task.description}"),
                        console=err_console(), transient=False)
    tasks: dict[str, int] = {}

    def on_event(ev: TaskEvent) -> None:
        if ev.host not in tasks:
            tasks[ev.host] = progress.add_task("", host=ev.host, total=None)
        colour = {"failed": "red", "unreachable": "red", "changed": "yellow", "skipped": "dim"}.get(ev.status, "green")
        progress.update(tasks[ev.host], advance=1,
                        description=f"[{colour}]{ev.status}[/{colour}] {ev.task}"[:120])

    with progress:
        return run_playbook(name, inv_path, limit=limit, check=check, forks=forks, extravars=extravars,
                            timeout=timeout, on_event=on_event, env=tool_env())


def _print_recap(run: PlaybookRun) -> None:
    rows = []
    for host, r in run.hosts.items():
        state = "[green]ok[/green]" if r.ok else ("[red]unreachable[/red]" if r.unreachable else "[red]failed[/red]")
        rows.append((host, state, r.tasks_ok, r.changed, r.failed_tasks, r.unreachable_tasks, r.skipped, r.message))
    console().print(table(f"{run.playbook}: {run.status}",
                          ("host", "result", "ok", "changed", "failed", "unreachable", "skipped", "message"), rows))


def _wheelhouse_option(fn):
    return click.option("--wheelhouse", "wheel_dir", type=click.Path(file_okay=False), default=None,
                        help="install from this folder of wheels, copied to the hosts (built from the "
                             "checkout when it holds no jinad_fab wheel)")(fn)


def _wheelhouse_vars(wheel_dir: str | None) -> dict[str, str]:
    if not wheel_dir:
        return {}
    path = pathlib.Path(wheel_dir).resolve()
    if not any(path.glob("jinad_fab-*.whl")):
        root = wheelhouse.project_root()
        if root is None:
            raise click.UsageError(f"{path} holds no jinad_fab wheel, and there is no checkout to build one from")
        err_console().print(f"building a wheelhouse from {root} into {path} ...")
        wheelhouse.build(path, root)
    return {"jinad_install_mode": "wheelhouse", "jinad_wheelhouse_src": str(path)}


@command.command("deploy")
@_options
@_wheelhouse_option
def deploy(inventory, vault_password_file, limit, check, forks, extra_vars, timeout, as_json, wheel_dir) -> None:
    """Install and start jinad (and Docker / the NVIDIA toolkit where asked). Idempotent."""
    _run("deploy", inventory, limit, check, forks, extra_vars, timeout, as_json, _wheelhouse_vars(wheel_dir))


@command.command("teardown")
@_options
@click.option("--purge", is_flag=True, help="also delete each daemon's home (workspaces and store)")
def teardown(inventory, vault_password_file, limit, check, forks, extra_vars, timeout, as_json, purge) -> None:
    """Stop jinad and remove what deploy installed."""
    _run("teardown", inventory, limit, check, forks, extra_vars, timeout, as_json,
         {"jinad_teardown_purge": True} if purge else None)


@command.command("upgrade")
@_options
@_wheelhouse_option
@click.option("--batch-size", type=click.IntRange(1), default=1, show_default=True,
              help="hosts upgraded at a time; each batch must answer /alive before the next")
def upgrade(inventory, vault_password_file, limit, check, forks, extra_vars, timeout, as_json, wheel_dir,
            batch_size) -> None:
    """Reinstall jinad-fab batch by batch behind a health barrier."""
    _run("upgrade", inventory, limit, check, forks, extra_vars, timeout, as_json,
         {"jinad_upgrade_batch_size": batch_size, **_wheelhouse_vars(wheel_dir)})


@command.command("verify")
@_options
def verify(inventory, vault_password_file, limit, check, forks, extra_vars, timeout, as_json) -> None:
    """Check that every host's daemon runs and answers."""
    _run("verify", inventory, limit, check, forks, extra_vars, timeout, as_json)


