"""`jinad-fab provision deploy|teardown|upgrade|rollback|verify -i INV`: run the shipped playbooks."""

from __future__ import annotations

import pathlib

import click
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn

from ...deploy import provision_wheels
from ...deploy.lock import break_host_locks, deploy_lock, host_locks, lock_path
from ...deploy.playbooks import PlaybookRun, TaskEvent, run_playbook
from ._common import (
    console,
    err_console,
    examples,
    finish,
    forks_option,
    inventory_option,
    inventory_path,
    json_option,
    limit_option,
    load_inventory,
    print_json,
    table,
    tool_env,
)


@examples(
    "jinad-fab provision deploy -i prod --check --diff    # what would change, changing nothing",
    "jinad-fab provision deploy -i prod -l 'gpu[0]'       # one host first",
    "jinad-fab provision upgrade -i prod --batch-size 2   # two hosts at a time behind /alive",
    "jinad-fab provision rollback -i prod                 # back to the release before the upgrade",
    "jinad-fab provision verify -i prod --json",
    "jinad-fab provision unlock -i prod                   # after a controller died mid-run",
)
@click.group("provision")
def command() -> None:
    """Provision hosts with the shipped Ansible playbooks (per-host results; exit 2/4 on failures)."""


def _options(fn):
    fn = json_option(fn)
    fn = click.option("--timeout", type=int, default=None, help="seconds before the whole run is stopped")(fn)
    fn = click.option("-e", "--extra-var", "extra_vars", multiple=True, metavar="KEY=VALUE",
                      help="an Ansible extra var (repeatable)")(fn)
    fn = forks_option(fn, default=None)
    fn = click.option("--diff", is_flag=True,
                      help="show what each task changes in files (with --check: what it would change)")(fn)
    fn = click.option("--check", is_flag=True,
                      help="dry run: list the tasks that would change; change nothing, on the hosts or here")(fn)
    fn = limit_option(fn)
    return inventory_option(fn)


def _lock_option(fn):
    return click.option("--lock-wait", type=click.FloatRange(0), default=0.0, show_default=True, metavar="SECONDS",
                        help="when another run holds this inventory's deploy lock, wait this long for it "
                             "(0: fail at once, naming who holds it)")(fn)


def _extravars(pairs: tuple[str, ...]) -> dict[str, str]:
    """``-e KEY=VALUE`` pairs; refused for a variable the other commands read from the inventory
    (:data:`~jinad_fab.deploy.inventory.CLIENT_VARS`): the daemon and its clients would disagree."""
    from ...deploy.inventory import CLIENT_VARS

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="-e/--extra-var")
        if key in CLIENT_VARS:
            raise click.BadParameter(
                f"{pair!r}: {key} says how jinad-fab reaches the daemon, and every other command (ping, flow up, "
                f"rotate-token, ...) reads it from the inventory alone, so given to this run only the daemon and "
                f"its clients would disagree. Set {key} in the inventory (host_vars/, group_vars/ or the hosts "
                f"file) and run again", param_hint="-e/--extra-var")
        out[key] = value
    return out


def _run(name: str, inventory: str, limit, check, diff, forks, extra_vars, timeout, as_json, extra=None,
         lock_wait: float | None = None, certificates: bool = False, vault_password_file: str | None = None) -> None:
    """Run playbook ``name``; a run that changes hosts (``lock_wait`` given, not --check) holds the
    inventory's deploy lock for its whole length. With ``certificates`` the fleet CA issues the
    hosts' certificates first (inside the lock)."""
    inv_path = inventory_path(inventory)
    extravars = {**_extravars(extra_vars), **(extra or {})}
    if lock_wait is None or check:  # a dry run changes nothing, so it neither takes nor waits for the lock
        _run_unlocked(name, inv_path, limit, check, diff, forks, extravars, timeout, as_json)
        return
    path = lock_path(inv_path, pathlib.Path(click.get_app_dir("jinad-fab")) / "locks")
    command = "jinad-fab provision " + " ".join(click.get_current_context().command_path.split()[2:] or [name])
    command = f"{command} -i {inventory}" + (f" -l {limit}" if limit else "")

    def waiting(holder) -> None:
        err_console().print(f"waiting up to {lock_wait:g}s for the deploy lock of {inventory}, held by "
                            f"{holder or 'another run'} ...", markup=False)

    with deploy_lock(path, command=command, inventory=str(inventory), wait=lock_wait, on_wait=waiting) as me:
        if certificates:
            _fleet_certificates(inventory, vault_password_file, limit, quiet=as_json)
        # the lock above is this controller's; the hosts' own locks keep other controllers off them
        with host_locks(inv_path, me, limit=limit, wait=lock_wait, forks=forks, extravars=extravars, env=tool_env()):
            _run_unlocked(name, inv_path, limit, check, diff, forks, extravars, timeout, as_json)


def _fleet_certificates(inventory: str, vault_password_file: str | None, limit: str | None, quiet: bool) -> None:
    """The fleet CA next to the inventory (made once) and a current certificate for every host the
    run deploys with TLS; the jinad role installs them (see roles/jinad/README.md)."""
    from ...deploy.pki import ensure_fleet_certificates

    # jinad_tls and jinad_tls_cert_src come from the inventory alone (never -e: see _extravars)
    inv = load_inventory(inventory, vault_password_file)
    made = ensure_fleet_certificates(inv, inv.select(limit))
    if quiet or made.ca is None:
        return
    if made.ca_created:
        err_console().print(f"created the fleet CA {made.ca} (its key beside it, 0600; clients check the "
                            f"daemons against it)", markup=False)
    for cert in made.issued:
        err_console().print(f"issued a TLS certificate for {cert.name} ({', '.join(inv[cert.name].certificate_names)}): "
                            f"{cert.reason}", markup=False)


def _run_unlocked(name, inv_path, limit, check, diff, forks, extravars, timeout, as_json) -> None:
    if as_json:
        run = run_playbook(name, inv_path, limit=limit, check=check, diff=diff, forks=forks, extravars=extravars,
                           timeout=timeout, env=tool_env())
        print_json({**run.as_dict(), "check": check})
    else:
        run = _run_with_progress(name, inv_path, limit, check, diff, forks, extravars, timeout)
        _print_recap(run, check=check, diff=diff)
    finish(run.hosts, f"{name}.yml")


def _run_with_progress(name, inv_path, limit, check, diff, forks, extravars, timeout) -> PlaybookRun:
    """Per-host progress as tasks finish: how many done, the last task and its outcome."""
    progress = Progress(SpinnerColumn(), TextColumn("[bold]{task.fields[host]}"), BarColumn(bar_width=None),
                        TextColumn("{task.completed} tasks"), TextColumn("{task.description}"),
                        console=err_console(), transient=False)
    tasks: dict[str, int] = {}

    def on_event(ev: TaskEvent) -> None:
        if ev.host not in tasks:
            tasks[ev.host] = progress.add_task("", host=ev.host, total=None)
        colour = {"failed": "red", "unreachable": "red", "changed": "yellow", "skipped": "dim"}.get(ev.status, "green")
        status = "would change" if check and ev.status == "changed" else ev.status
        progress.update(tasks[ev.host], advance=1,
                        description=f"[{colour}]{status}[/{colour}] {escape(ev.task)}"[:120])

    with progress:
        return run_playbook(name, inv_path, limit=limit, check=check, diff=diff, forks=forks, extravars=extravars,
                            timeout=timeout, on_event=on_event, env=tool_env())


def _print_recap(run: PlaybookRun, *, check: bool = False, diff: bool = False) -> None:
    out = console()
    rows = []
    for host, r in run.hosts.items():
        state = "[green]ok[/green]" if r.ok else ("[red]unreachable[/red]" if r.unreachable else "[red]failed[/red]")
        rows.append((host, state, r.tasks_ok, r.changed, r.failed_tasks, r.unreachable_tasks, r.skipped, r.message))
    changed = "would change" if check else "changed"
    out.print(table(f"{run.playbook}{' (check: nothing was changed)' if check else ''}: {run.status}",
                    ("host", "result", "ok", changed, "failed", "unreachable", "skipped", "message"), rows))
    if not (check or diff):
        return
    for host, r in run.hosts.items():
        if not r.changes:
            continue
        out.print(f"[bold]{host}[/bold]: {len(r.changes)} task(s) {'would change' if check else 'changed'}:")
        for change in r.changes:
            out.print(f"  [yellow]~[/yellow] {escape(change['task'])}")
            if diff and change["diff"]:
                for line in change["diff"].splitlines():
                    style = "green" if line.startswith("+") else "red" if line.startswith("-") else "dim"
                    out.print(f"      [{style}]{escape(line)}[/{style}]")


def _wheelhouse_option(fn):
    return click.option("--wheelhouse", "wheel_dir", type=click.Path(file_okay=False), default=None,
                        help="install from this folder of wheels, copied to the hosts (built from the "
                             "checkout when it holds no jinad_fab wheel)")(fn)


def _wheelhouse_vars(wheel_dir: str | None) -> dict[str, str]:
    if not wheel_dir:
        return {}
    path = pathlib.Path(wheel_dir).resolve()
    if not any(path.glob("jinad_fab-*.whl")):
        root = provision_wheels.project_root()
        if root is None:
            raise click.UsageError(f"{path} holds no jinad_fab wheel, and there is no checkout to build one from")
        err_console().print(f"building a wheelhouse from {root} into {path} ...")
        provision_wheels.build(path, root)
    return {"jinad_install_mode": "wheelhouse", "jinad_wheelhouse_src": str(path)}


def _wheelhouse_check_vars(wheel_dir: str | None) -> dict[str, str]:
    """In a dry run the wheelhouse is named, never built (building would write on the controller)."""
    if not wheel_dir:
        return {}
    return {"jinad_install_mode": "wheelhouse", "jinad_wheelhouse_src": str(pathlib.Path(wheel_dir).resolve())}


@examples(
    "jinad-fab provision deploy -i prod",
    "jinad-fab provision deploy -i prod --check --diff",
    "jinad-fab provision deploy -i prod --wheelhouse ./wheels   # air-gapped hosts",
    "jinad-fab provision deploy -i prod -l 'cpu[0:1]' -e jinad_version=0.9.1 --forks 20",
)
@command.command("deploy")
@_options
@_wheelhouse_option
@_lock_option
def deploy(inventory, vault_password_file, limit, check, diff, forks, extra_vars, timeout, as_json, wheel_dir,
           lock_wait) -> None:
    """Install and start jinad (and Docker / the NVIDIA toolkit where asked). Idempotent.

    One run at a time per inventory: a second one fails naming who holds the deploy lock, or
    waits for it with --lock-wait.
    """
    _run("deploy", inventory, limit, check, diff, forks, extra_vars, timeout, as_json,
         _wheelhouse_vars(wheel_dir) if not check else _wheelhouse_check_vars(wheel_dir), lock_wait=lock_wait,
         certificates=True, vault_password_file=vault_password_file)


@examples(
    "jinad-fab provision teardown -i prod -l cpu-3",
    "jinad-fab provision teardown -i prod --purge     # also the daemons' homes",
)
@command.command("teardown")
@_options
@click.option("--purge", is_flag=True, help="also delete each daemon's home (workspaces and store)")
@_lock_option
def teardown(inventory, vault_password_file, limit, check, diff, forks, extra_vars, timeout, as_json, purge,
             lock_wait) -> None:
    """Stop jinad and remove what deploy installed."""
    _run("teardown", inventory, limit, check, diff, forks, extra_vars, timeout, as_json,
         {"jinad_teardown_purge": True} if purge else None, lock_wait=lock_wait)


@examples(
    "jinad-fab provision upgrade -i prod",
    "jinad-fab provision upgrade -i prod --batch-size 3 --wheelhouse ./wheels",
)
@command.command("upgrade")
@_options
@_wheelhouse_option
@click.option("--batch-size", type=click.IntRange(1), default=1, show_default=True,
              help="hosts upgraded at a time; each batch must answer /alive before the next")
@_lock_option
def upgrade(inventory, vault_password_file, limit, check, diff, forks, extra_vars, timeout, as_json, wheel_dir,
            batch_size, lock_wait) -> None:
    """Install jinad-fab as a new release batch by batch behind a health barrier (the release
    that ran before stays on the host for `provision rollback`)."""
    wheels = _wheelhouse_vars(wheel_dir) if not check else _wheelhouse_check_vars(wheel_dir)
    _run("upgrade", inventory, limit, check, diff, forks, extra_vars, timeout, as_json,
         {"jinad_upgrade_batch_size": batch_size, **wheels}, lock_wait=lock_wait, certificates=True,
         vault_password_file=vault_password_file)


@examples(
    "jinad-fab provision rollback -i prod                 # every host back to the release before the upgrade",
    "jinad-fab provision rollback -i prod -l 'gpu[0]' --batch-size 2",
)
@command.command("rollback")
@_options
@click.option("--batch-size", type=click.IntRange(1), default=1, show_default=True,
              help="hosts switched at a time; each batch must answer /alive before the next")
@_lock_option
def rollback(inventory, vault_password_file, limit, check, diff, forks, extra_vars, timeout, as_json, batch_size,
             lock_wait) -> None:
    """Switch jinad back to the release that ran before the last upgrade, batch by batch behind
    the same health barrier as upgrade. A second rollback undoes the first."""
    _run("rollback", inventory, limit, check, diff, forks, extra_vars, timeout, as_json,
         {"jinad_upgrade_batch_size": batch_size}, lock_wait=lock_wait)


@examples(
    "jinad-fab provision verify -i prod",
    "jinad-fab provision verify -i prod -l gpu --json",
)
@command.command("verify")
@_options
def verify(inventory, vault_password_file, limit, check, diff, forks, extra_vars, timeout, as_json) -> None:
    """Check that every host's daemon runs and answers."""
    _run("verify", inventory, limit, check, diff, forks, extra_vars, timeout, as_json)


@examples(
    "jinad-fab provision rotate-token -i prod",
    "jinad-fab provision rotate-token -i prod --json | jq '.[] | {host, rotated}'",
    "jinad-fab provision rotate-token -i prod -l gpu      # hosts with a jinad_token_file of their own",
)
@command.command("rotate-token")
@inventory_option
@limit_option
@forks_option(default=16)
@click.option("--timeout", type=float, default=10.0, show_default=True, help="seconds per daemon request")
@_lock_option
@json_option
def rotate_token(inventory, vault_password_file, limit, forks, timeout, lock_wait, as_json) -> None:
    """Give every host's daemon a new token, over its API: no daemon, Flow or Pod is restarted.

    Hosts that share a token file rotate together: each daemon takes the new token while still
    accepting the old; only when all took it does the token file next to the inventory change and
    the old token stop working. When one cannot take it, the others go back to the old token.
    With -l, the hosts selected must include every host of their token file.
    Exit 0 when every host rotated, 4 when the failing ones are unreachable, 2 otherwise.
    """
    from ...deploy.rotation import rotate_tokens

    inv_path = inventory_path(inventory)
    inv = load_inventory(inventory, vault_password_file)
    path = lock_path(inv_path, pathlib.Path(click.get_app_dir("jinad-fab")) / "locks")
    with deploy_lock(path, command=f"jinad-fab provision rotate-token -i {inventory}", inventory=str(inventory),
                     wait=lock_wait):
        result = rotate_tokens(inv, inv.select(limit), max_parallel=forks, timeout=timeout)
    if as_json:
        print_json([r.as_dict() for r in result.values()])
    else:
        rows = [(name, r.url, "[green]rotated[/green]" if r.ok else ("[yellow]rotated[/yellow]" if r.rotated
                 else "[red]not rotated[/red]"), escape(r.error)) for name, r in result.items()]
        console().print(table(f"token rotation in {inventory}", ("host", "daemon", "token", "error"), rows))
    finish(result, "rotate-token")


@examples(
    "jinad-fab provision unlock -i prod",
    "jinad-fab provision unlock -i prod -l gpu-2 --json",
)
@command.command("unlock")
@inventory_option
@limit_option
@forks_option
@click.option("-e", "--extra-var", "extra_vars", multiple=True, metavar="KEY=VALUE",
              help="an Ansible extra var (repeatable)")
@json_option
def unlock(inventory, vault_password_file, limit, forks, extra_vars, as_json) -> None:
    """Break the deploy lock on each host, whoever holds it.

    A run releases the locks it took even when it fails; only a controller that died mid-run
    leaves them behind. Make sure that run is really gone before breaking its locks.
    """
    broken = break_host_locks(inventory_path(inventory), limit=limit, forks=forks,
                              extravars=_extravars(extra_vars), env=tool_env())
    if as_json:
        print_json({"broken": broken})
    elif broken:
        console().print(f"broke the deploy lock on {len(broken)} host(s): {', '.join(broken)}", markup=False)
    else:
        console().print("no host held a deploy lock", markup=False)
