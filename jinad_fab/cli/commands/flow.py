"""`jinad-fab flow`: run a whole Flow on one host through its daemon."""

from __future__ import annotations

import json
import os

import click
from rich.console import Console
from rich.table import Table

from ...errors import JinadFabError
from ...flow import Flow
from ...flow.remote_pods import flow_upload
from ...remote import Workspace
from ._daemon import daemon, host_options


@click.group("flow")
def command() -> None:
    """Run Flows on a host's jinad: create, list, follow logs, delete."""


@command.command("create")
@click.argument("flow_file", type=click.Path(exists=True, dir_okay=False))
@host_options
@click.option("--upload", "uploads", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="one more file for the workspace (repeatable); files the Flow names are found by themselves")
@click.option("--json", "as_json", is_flag=True, help="print the created Flow as JSON")
def create(flow_file: str, host: str, token: str | None, uploads: tuple[str, ...], as_json: bool) -> None:
    """Upload FLOW_FILE and what it names, build the workspace, start the Flow, print its gateway."""
    flow = Flow.load_config(flow_file)  # checks the YAML here, before anything is uploaded
    files = flow_upload(flow, os.path.abspath(flow_file), list(uploads))
    filename = os.path.relpath(os.path.abspath(flow_file), flow.base_dir).replace(os.sep, "/")
    err = Console(stderr=True)
    with daemon(host, token) as d:
        ws = Workspace.create(d, files)
        try:
            with err.status(f"building workspace {ws.id} on {d.name} ({len(files)} files)..."):
                ws.wait_active()
            body = ws.start_flow(filename).body
        except JinadFabError:
            ws.delete()
            raise
    if as_json:
        click.echo(json.dumps(body, indent=2))
        return
    gw = body.get("gateway") or {}
    click.echo(f"{body['id']} running on {d.name}: gateway {gw.get('host')} "
               f"native port {gw.get('native_port')}, http port {gw.get('http_port')}")
    click.echo(f"follow its logs: jinad-fab flow logs {body['id']} --host {host} -f")


@command.command("ls")
@host_options
@click.option("--json", "as_json", is_flag=True)
def ls(host: str, token: str | None, as_json: bool) -> None:
    """List the Flows on a host."""
    with daemon(host, token) as d:
        items = d.flows()
    if as_json:
        click.echo(json.dumps(items, indent=2))
        return
    table = Table(title=f"Flows on {host}")
    for col in ("id", "state", "workspace", "file", "gateway"):
        table.add_column(col)
    for f in items:
        gw = f.get("gateway") or {}
        table.add_row(f["id"], f["state"], f["workspace_id"], f.get("filename", ""),
                      f"{gw.get('host')}:{gw.get('native_port')}/{gw.get('http_port')}" if gw else "-")
    Console().print(table)


@command.command("logs")
@click.argument("flow_id")
@host_options
@click.option("-f", "--follow", is_flag=True, help="keep streaming until the Flow stops (Ctrl-C to leave)")
@click.option("--tail", type=click.IntRange(0), default=None, help="only the last N lines")
def logs(flow_id: str, host: str, token: str | None, follow: bool, tail: int | None) -> None:
    """Print a Flow's log lines (JSON lines from its Pods and the daemon)."""
    with daemon(host, token) as d:
        try:
            for entry in d.logs(flow_id, follow=follow, tail=tail):
                src = entry.get("source") or entry.get("logger") or "jinad"
                click.echo(f"{src}: {entry.get('msg') or entry.get('message') or json.dumps(entry)}")
        except KeyboardInterrupt:
            pass


@command.command("delete")
@click.argument("flow_id")
@host_options
@click.option("--keep-workspace", is_flag=True, help="leave the Flow's workspace on the host")
def delete(flow_id: str, host: str, token: str | None, keep_workspace: bool) -> None:
    """Stop a Flow (and remove its workspace unless --keep-workspace)."""
    with daemon(host, token) as d:
        body = d.flow(flow_id)
        d.delete_flow(flow_id)
        if not keep_workspace:
            d.delete_workspace(body["workspace_id"])
    click.echo(f"{flow_id} stopped" + ("" if keep_workspace else f"; workspace {body['workspace_id']} removed"))
