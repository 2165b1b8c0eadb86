"""`jinad-fab flow create|ls|logs|delete|scale|update|dump --host H`: a whole Flow on one host through its
daemon, changed while it runs; `scale` and `update` also take a deployment's NAME with `-i INV`."""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any

import click

from ....errors import JinadFabError, RuntimeFailure
from .._common import (
    err_console,
    examples,
    inventory_option,
    json_option,
    load_inventory,
    print_json,
    print_ndjson,
    print_table,
    table,
    tail_option,
)
from .._daemon import ADDRESS, ca_file_option, daemon, host_options, token_options
from .._progress import stream_build, upload_bar


def _bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


@examples(
    "jinad-fab flow create flow.yml --host gpu1:8000",
    "jinad-fab flow create flow.yml --host gpu1 --upload vocab.txt   # a file the Flow reads at run time",
    "jinad-fab flow create flow.yml --host gpu1 --json | jq -r .gateway.http_port",
)
@click.command("create")
@click.argument("flow_file", type=click.Path(exists=True, dir_okay=False))
@host_options
@click.option("--upload", "uploads", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="one more file for the workspace (repeatable); files the Flow names are found by themselves")
@click.option("--peer", "peers", multiple=True, metavar="ADDRESS=TOKEN_FILE",
              help="the token file of another daemon a Pod names (`host: ADDRESS`); sent with the request, "
                   "never stored (repeatable; the daemon's own --peer settings fill in the rest)")
@json_option
def create(flow_file: str, host: str, token: str | None, uploads: tuple[str, ...], peers: tuple[str, ...],
           as_json: bool) -> None:
    """Upload FLOW_FILE and what it names, build the workspace, start the Flow, print its gateway.

    Pods that name other hosts (`host: gpu1:8000`) are started there by the Flow on HOST."""
    # imported here: `jinad-fab flow up|ps` do not pay for the Flow runtime's import
    from ....flow import Flow
    from ....flow.remote_pods import flow_upload
    from ....remote import Workspace
    from ....tokens import TokenFileError, read_token_file

    peer_tokens: dict[str, str] = {}
    for item in peers:
        address, eq, path = item.partition("=")
        if not (address and eq and path):
            raise click.BadParameter(f"expected ADDRESS=TOKEN_FILE, not {item!r}", param_hint="--peer")
        try:
            peer_tokens[address] = read_token_file(pathlib.Path(path))
        except TokenFileError as exc:
            raise click.BadParameter(str(exc), param_hint="--peer") from None
    flow = Flow.load_config(flow_file)  # checks the YAML here, before anything is uploaded
    files = flow_upload(flow, os.path.abspath(flow_file), list(uploads))
    filename = os.path.relpath(os.path.abspath(flow_file), flow.base_dir).replace(os.sep, "/")
    err = err_console()
    size = sum(len(content) for content in files.values())
    err.print(f"uploading {len(files)} file(s), {_bytes(size)}, to {host}", markup=False)
    with daemon(host, token) as d:
        with upload_bar(f"uploading to {d.name}") as on_progress:  # live bytes on a terminal only
            ws = Workspace.create(d, files, on_progress=on_progress)
        try:
            stream_build(ws, d.name)
            ws.reload().wait_active()
            body = ws.start_flow(filename, peers=peer_tokens).body
        except JinadFabError:
            ws.delete()
            raise
    if as_json:
        print_json(body)
        return
    gw = body.get("gateway") or {}
    click.echo(f"{body['id']} running on {d.name}: gateway {gw.get('host')} "
               f"native port {gw.get('native_port')}, http port {gw.get('http_port')}")
    click.echo(f"follow its logs: jinad-fab flow logs {body['id']} --host {host} -f")


@examples(
    "jinad-fab flow ls --host gpu1:8000",
    "jinad-fab flow ls --host gpu1 --json | jq -r '.[] | select(.state==\"ACTIVE\") | .id'",
)
@click.command("ls")
@host_options
@json_option
def ls(host: str, token: str | None, as_json: bool) -> None:
    """List the Flows on a host (full ids, ready to copy)."""
    with daemon(host, token) as d:
        items = d.flows()
    if as_json:
        print_json(items)
        return
    rows = []
    for f in items:
        gw = f.get("gateway") or {}
        rows.append((f["id"], f["state"], f["workspace_id"], f.get("filename", ""),
                     f"{gw.get('host')}:{gw.get('native_port')}/{gw.get('http_port')}" if gw else "-"))
    # ids are never folded or cut, whatever the terminal's width: they are made to be copied
    print_table(table(f"Flows on {host}", ("id", "state", "workspace", "file", "gateway"), rows,
                      whole=("id", "workspace")))


@examples(
    "jinad-fab flow logs jflow-1a2b3c --host gpu1 -n 100",
    "jinad-fab flow logs jflow-1a2b3c --host gpu1 -f      # follow until the Flow stops or Ctrl-C",
    "jinad-fab flow logs jflow-1a2b3c --host gpu1 --json  # one JSON object per line",
)
@click.command("logs")
@click.argument("flow_id")
@host_options
@click.option("-f", "--follow", is_flag=True, help="keep streaming until the Flow stops (Ctrl-C to leave)")
@tail_option
@json_option
def logs(flow_id: str, host: str, token: str | None, follow: bool, tail: int | None, as_json: bool) -> None:
    """Print a Flow's log lines (from its Pods and the daemon)."""
    with daemon(host, token) as d:
        try:
            for entry in d.logs(flow_id, follow=follow, tail=tail):
                if as_json:
                    print_ndjson(entry)
                    continue
                src = entry.get("source") or entry.get("logger") or "jinad"
                click.echo(f"{src}: {entry.get('msg') or entry.get('message') or json.dumps(entry)}")
        except KeyboardInterrupt:
            pass


@examples(
    "jinad-fab flow delete jflow-1a2b3c --host gpu1",
    "jinad-fab flow delete jflow-1a2b3c --host gpu1 --keep-workspace --json",
)
@click.command("delete")
@click.argument("flow_id")
@host_options
@click.option("--keep-workspace", is_flag=True, help="leave the Flow's workspace on the host")
@json_option
def delete(flow_id: str, host: str, token: str | None, keep_workspace: bool, as_json: bool) -> None:
    """Stop a Flow (and remove its workspace unless --keep-workspace)."""
    with daemon(host, token) as d:
        body = d.flow(flow_id)
        d.delete_flow(flow_id)
        if not keep_workspace:
            d.delete_workspace(body["workspace_id"])
    if as_json:
        print_json({"id": flow_id, "stopped": True, "workspace_id": body["workspace_id"],
                    "workspace_removed": not keep_workspace})
        return
    click.echo(f"{flow_id} stopped" + ("" if keep_workspace else f"; workspace {body['workspace_id']} removed"))


# ---- live changes (PUT /flows/{id}): a progress line per replica as it happens ----


def _value(text: str) -> Any:
    """A --uses-with value: JSON when it reads as JSON (numbers, true, lists), else the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _pairs(items: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--uses-with")
        out[key] = _value(value)
    return out


def _run_change(host: str, token: str | None, flow_id: str, change: dict[str, Any], as_json: bool) -> None:
    """Start the change, print each replica's step as the daemon reports it, end with the outcome."""
    from ....remote import FlowHandle

    with daemon(host, token) as d:
        current = FlowHandle(d, {"id": flow_id}).follow_change(change, on_event=None if as_json else print_step)
    if as_json:
        print_json(current)
    if current.get("state") == "failed":
        raise RuntimeFailure(f"the {change['kind']} of Pod {change['pod']!r} failed: {current.get('error')}")
    if not as_json:
        click.echo(f"{flow_id}: {change['kind']} of Pod {change['pod']!r} done"
                   + (f"; {current['result']}" if current.get("result") else ""))


def print_step(event: dict[str, Any]) -> None:
    """One line on stderr per replica step of a live change (``encode: 2 ready``)."""
    err_console().print(f"  {event['pod']}: {event.get('replica')} {event['step']}", markup=False)


def _flow_or_deployment(fn):
    """``--host`` (TARGET is a Flow id on that jinad) or ``-i INV`` (TARGET is a deployment's name,
    found through its record from any machine with the inventory)."""
    fn = inventory_option(fn)
    fn = ca_file_option(fn)
    fn = token_options(fn)
    fn = click.option("--break-lock", is_flag=True,
                    help="remove the deployment's lock (-i INV) first, whoever holds it (when its controller died: a "
                         "refusal names who holds it and when its lease ends)")(fn)
    return click.option("--host", "host", default=None, type=ADDRESS, metavar="HOST[:PORT]",
                        help="the jinad running Flow FLOW_ID; without it, NAME is a deployment of -i INV")(fn)


def _deployment_change(inventory: str, vault_password_file: str | None, name: str, pod: str, as_json: bool,
                       break_lock: bool = False, **change: Any) -> None:
    """A live change of deployment ``name``'s Pod, a line per replica step, recorded as a release."""
    try:
        from ....deploy import deployment
    except ImportError as exc:  # the inventory form needs the deploy extra
        raise click.UsageError(f"a deployment needs jinad-fab[deploy] ({exc}); give --host for one Flow") from None
    inv = load_inventory(inventory, vault_password_file)
    err = err_console()
    command = "jinad-fab " + " ".join(click.get_current_context().command_path.split()[1:]) + f" {name} {pod} -i {inventory}"
    applied = deployment.change(inv, name, pod, say=lambda msg: err.print(msg, markup=False),
                                on_step=None if as_json else print_step, break_lock=break_lock, command=command,
                                **change)
    if as_json:
        click.echo(json.dumps(applied.as_dict()))
        return
    click.echo(f"deployment {applied.name}: release {applied.release} on {applied.keeper}, "
               f"changed={applied.changed} ({applied.action}, {applied.seconds:.1f}s)")


@examples(
    "jinad-fab flow scale -i prod search encode 4     # deployment `search`, from any machine with the inventory",
    "jinad-fab flow scale jflow-1a2b3c enc 4 --host gpu1",
    "jinad-fab flow scale jflow-1a2b3c enc 1 --host gpu1 --json",
)
@click.command("scale")
@click.argument("target", metavar="NAME|FLOW_ID")
@click.argument("pod")
@click.argument("replicas", type=click.IntRange(1, 64))
@_flow_or_deployment
@json_option
def scale(target: str, pod: str, replicas: int, host: str | None, token: str | None, inventory: str,
          vault_password_file: str | None, break_lock: bool, as_json: bool) -> None:
    """Give POD REPLICAS replicas (per shard) while it serves: POD of deployment NAME of the
    inventory (recorded as a new release, so `flow rollback NAME` returns), or with --host, of
    the Flow FLOW_ID on that jinad."""
    if host is None:
        _deployment_change(inventory, vault_password_file, target, pod, as_json, break_lock, replicas=replicas)
        return
    _run_change(host, token, target, {"kind": "scale", "pod": pod, "replicas": replicas}, as_json)


@examples(
    "jinad-fab flow update -i prod search encode --uses-with version=v2   # a deployment: a new release",
    "jinad-fab flow update jflow-1a2b3c enc --uses-with version=v2 --host gpu1",
    "jinad-fab flow update jflow-1a2b3c idx --dump-path dumps/monday --host gpu1   # reload an index",
)
@click.command("update")
@click.argument("target", metavar="NAME|FLOW_ID")
@click.argument("pod")
@click.option("--uses", help="the new Executor: a name, or a YAML file of the workspace")
@click.option("--uses-with", "uses_with", multiple=True, metavar="KEY=VALUE",
              help="an argument of the Executor (repeatable; VALUE read as JSON when it is); for a deployment, "
                   "merged into the Pod's recorded uses_with")
@click.option("--dump-path", help="new replicas of an _index load this dump (a workspace path; --host only)")
@_flow_or_deployment
@json_option
def update(target: str, pod: str, uses: str | None, uses_with: tuple[str, ...], dump_path: str | None,
           host: str | None, token: str | None, inventory: str, vault_password_file: str | None,
           break_lock: bool, as_json: bool) -> None:
    """Roll POD's replicas one at a time to a new Executor, new arguments or an index dump: POD of
    deployment NAME of the inventory (recorded as a new release), or with --host, of the Flow
    FLOW_ID on that jinad."""
    if not (uses or uses_with or dump_path):
        raise click.UsageError("give --uses, --uses-with or --dump-path")
    if host is None:
        if dump_path:
            raise click.UsageError("--dump-path changes one Flow: give --host and its id")
        _deployment_change(inventory, vault_password_file, target, pod, as_json, break_lock, uses=uses,
                           uses_with=_pairs(uses_with) if uses_with else None)
        return
    change = {"kind": "rolling_update", "pod": pod, "uses": uses,
              "uses_with": _pairs(uses_with) if uses_with else None, "dump_path": dump_path}
    _run_change(host, token, target, change, as_json)


@examples("jinad-fab flow dump jflow-1a2b3c idx dumps/monday --host gpu1")
@click.command("dump")
@click.argument("flow_id")
@click.argument("pod")
@click.argument("path")
@host_options
@json_option
def dump(flow_id: str, pod: str, path: str, host: str, token: str | None, as_json: bool) -> None:
    """Have every shard of _index POD write a consistent dump under PATH (in the workspace)."""
    _run_change(host, token, flow_id, {"kind": "dump", "pod": pod, "path": path}, as_json)


COMMANDS = (create, ls, logs, delete, scale, update, dump)
