"""`jinad-fab pod`: start one Pod on a host through its daemon and follow its log."""

from __future__ import annotations

import json
import os

import click

from ...errors import JinadFabError
from ...flow.remote_pods import PodFiles
from ...remote import Workspace
from ._daemon import daemon, host_options


@click.command("pod")
@click.option("--uses", default="_logforward", show_default=True,
              help="a built-in (_pass, _logforward, _index), a class name, or a .yml file here")
@host_options
@click.option("--name", default="pod", show_default=True)
@click.option("--parallel", type=click.IntRange(1, 64), default=1, show_default=True)
@click.option("--shards", type=click.IntRange(1, 64), default=1, show_default=True)
@click.option("--uses-with", default=None, metavar="JSON", help='arguments of the Executor, e.g. \'{"dim": 64}\'')
@click.option("--py-modules", "py_modules", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="a Python file defining the Executor (repeatable)")
@click.option("--upload", "uploads", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="one more file for the workspace (repeatable)")
@click.option("--detach", is_flag=True, help="leave the Pod running and print its ids instead of following it")
def command(uses: str, host: str, token: str | None, name: str, parallel: int, shards: int,
            uses_with: str | None, py_modules: tuple[str, ...], uploads: tuple[str, ...], detach: bool) -> None:
    """Start a Pod on HOST; print its addresses; follow its log until Ctrl-C, then remove it."""
    try:
        kwargs = json.loads(uses_with) if uses_with else {}
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--uses-with") from exc
    if not isinstance(kwargs, dict):
        raise click.BadParameter("must be a JSON object", param_hint="--uses-with")
    files = PodFiles(os.getcwd())
    uses_in_ws, mods = files.add_executor(uses, list(py_modules), list(uploads), f"Pod {name!r}")
    with daemon(host, token) as d:
        workspace = Workspace.create(d, files.payload())
        ws = workspace.body
        pod = None
        try:
            workspace.wait_active()
            pod = workspace.start_pod({"name": name, "uses": uses_in_ws, "py_modules": mods,
                                       "parallel": parallel, "shards": shards, "uses_with": kwargs}).body
            click.echo(f"{pod['id']} {pod['state']} on {d.name} (workspace {ws['id']})")
            click.echo(f"  in: {', '.join(pod.get('in_addresses') or [])}")
            click.echo(f"  ctrl: {pod.get('ctrl_address')}")
            if detach:
                click.echo(f"remove it with: curl -X DELETE {d.base_url}/pods/{pod['id']}")
                pod = None
                return
            click.echo("following its log; Ctrl-C stops and removes it", err=True)
            try:
                for entry in d.logs(pod["id"], follow=True):
                    click.echo(f"{entry.get('source') or name}: {entry.get('msg') or entry.get('message')}")
            except KeyboardInterrupt:
                pass
        finally:
            if pod is not None:
                try:
                    d.delete_pod(pod["id"])
                    d.delete_workspace(ws["id"])
                except JinadFabError as exc:
                    click.echo(f"could not clean up on {d.name}: {exc}", err=True)
            elif not detach:
                d.delete_workspace(ws["id"])
