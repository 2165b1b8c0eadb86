"""`jinad-fab flow up|down|ps -i INV`: a Flow spread over an inventory.

`flow up` places the Flow's Pods on the inventory's hosts (``hosts: GROUP`` / ``host: NAME``,
the same placement `render flow` prints), then runs the Flow here: the Gateway and unplaced
Pods are local, every placed Pod is started through its host's jinad (one workspace per host).
It prints the gateway and serves until Ctrl-C or SIGTERM, then stops everything it started.
`flow ps` lists what runs on every host, `flow tail` merges their logs (prefixed host/pod), and
`flow down` stops what is left there.

These subcommands join the `flow` group beside ``host.py``'s single-host create/ls/logs/delete.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import threading
from typing import Any

import click

from ....deploy.fleet import fan_out
from ....deploy.inventory import Inventory
from ....deploy.render import Tagged, render_flow
from .._common import (
    console,
    err_console,
    examples,
    finish,
    forks_option,
    inventory_option,
    json_option,
    limit_option,
    load_inventory,
    print_json,
    print_ndjson,
    print_table,
    table,
    tail_option,
)

__all__ = ["COMMANDS", "placed_flow"]


def placed_flow(flow_file: str, inv: Inventory, *, inventory_name: str | None = None,
                flow_args: dict[str, Any] | None = None):
    """(Flow, RenderedFlow): the Flow in FLOW_FILE with its Pods placed on ``inv``'s hosts.

    Each placed Pod carries its host's token (in memory only: Flow YAML never holds secrets).
    """
    from ....flow.yaml import flow_from_dict

    with open(flow_file, encoding="utf-8") as fh:
        rendered = render_flow(fh.read(), inv, what=flow_file, inventory_name=inventory_name)
    body = copy.deepcopy(rendered.flow.value if isinstance(rendered.flow, Tagged) else rendered.flow)
    for spec in body["pods"]:
        a = rendered.placement[spec["name"]]
        if a.host:
            token, ca_file = inv.token_for(inv[a.host]), inv.ca_file_for(inv[a.host])
            if token:
                spec["token"] = token
            if ca_file:
                spec["ca_file"] = ca_file
    if flow_args:
        body["with"] = {**(body.get("with") or {}), **flow_args}
    base_dir = os.path.dirname(os.path.abspath(flow_file))
    return flow_from_dict(body, base_dir=base_dir, what=flow_file), rendered


@examples(
    "jinad-fab flow up flow.yml -i prod                  # Pods with `hosts: gpu` land on gpu hosts",
    "jinad-fab flow up flow.yml -i prod --port-http 8080 --gateway-host 0.0.0.0",
    "jinad-fab flow up flow.yml -i prod --json           # one JSON line: gateway and placement",
)
@click.command("up")
@click.argument("flow_file", type=click.Path(exists=True, dir_okay=False))
@inventory_option
@click.option("--gateway-host", default=None, help="address the local Gateway binds [the Flow's, 127.0.0.1]")
@click.option("--port-http", type=click.IntRange(0, 65535), default=None, help="the Gateway's HTTP port")
@click.option("--port-native", type=click.IntRange(0, 65535), default=None, help="the Gateway's native port")
@json_option
def up(flow_file: str, inventory: str, vault_password_file: str | None, gateway_host: str | None,
       port_http: int | None, port_native: int | None, as_json: bool) -> None:
    """Place FLOW_FILE's Pods on the inventory, start them, print the gateway, serve until Ctrl-C."""
    inv = load_inventory(inventory, vault_password_file)
    args = {k: v for k, v in {"host": gateway_host, "port_http": port_http, "port_native": port_native}.items()
            if v is not None}
    flow, rendered = placed_flow(flow_file, inv, inventory_name=inventory, flow_args=args)
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    err = err_console()
    try:
        with err.status(f"starting {len(flow.pods)} Pod(s) on {len(rendered.placement.hosts)} host(s)..."):
            flow.start()
        try:
            ports = flow.gateway_ports
            info = {
                "gateway": {"host": flow.args["host"], **ports},
                "placement": [a.as_dict() for a in rendered.placement],
            }
            if as_json:
                click.echo(json.dumps(info))
            else:
                console().print(table("placement", ("pod", "host", "daemon", "peas", "gpus"),
                                      [(a.pod, a.host or "(local)", a.target or "", a.peas,
                                        ",".join(map(str, a.gpu_ids))) for a in rendered.placement]))
                click.echo(f"gateway: {flow.args['host']} native port {ports['native_port']}, "
                           f"http port {ports['http_port']} (Ctrl-C stops the Flow)")
            while not stop.wait(0.5):
                if flow.failure:
                    err.print(f"[red]a Pod died:[/red] {flow.failure}")
                    break
        finally:
            with err.status("stopping the Flow and its remote Pods..."):
                flow.close()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if flow.failure:
        raise click.ClickException(f"the Flow stopped because a Pod died: {flow.failure}")


def _objects(client) -> dict[str, list[dict[str, Any]]]:
    return {"flows": client.flows(), "pods": client.pods(),
            "workspaces": client.workspaces()}


def _name(item: dict[str, Any]) -> str:
    """A Pod's name from its args, a Flow's file name, else the id."""
    return str((item.get("args") or {}).get("name") or item.get("filename") or item["id"])


def _live(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [i for i in items if i.get("state") not in ("STOPPED", "FAILED", "DELETING")]


@examples(
    "jinad-fab flow ps -i prod",
    "jinad-fab flow ps -i prod -l 'gpu[0]' --json | jq '.[].value.pods[].id'",
)
@click.command("ps")
@inventory_option
@limit_option
@forks_option(default=16)
@json_option
def ps(inventory: str, vault_password_file: str | None, limit: str | None, forks: int, as_json: bool) -> None:
    """List the Flows, Pods and workspaces on every host of the inventory."""
    inv = load_inventory(inventory, vault_password_file)
    result = fan_out(inv, inv.select(limit), _objects, max_parallel=forks)
    if as_json:
        print_json(list(result.as_dict().values()))
    else:
        rows = []
        for host, r in result.items():
            if not r.ok:
                rows.append((host, "-", "-", "-", r.error))
                continue
            for kind in ("flows", "pods", "workspaces"):
                for item in r.value[kind]:
                    rows.append((host, kind[:-1], item.get("id"), item.get("state"), _name(item)))
        print_table(table(f"objects on {len(result)} host(s)", ("host", "kind", "id", "state", "name"), rows,
                          whole=("id",)))
    finish(result, "flow ps")


@examples(
    "jinad-fab flow down -i prod            # every host of the inventory",
    "jinad-fab flow down -i prod -l cpu --json",
)
@click.command("down")
@inventory_option
@limit_option
@forks_option(default=16)
@json_option
def down(inventory: str, vault_password_file: str | None, limit: str | None, forks: int, as_json: bool) -> None:
    """Stop every Flow and Pod on the inventory's hosts and remove their workspaces."""
    inv = load_inventory(inventory, vault_password_file)

    def clear(client) -> dict[str, int]:
        objs = _objects(client)
        for f in _live(objs["flows"]):
            client.delete_flow(f["id"])
        for p in _live(objs["pods"]):
            client.delete_pod(p["id"])
        for w in objs["workspaces"]:
            client.delete_workspace(w["id"])
        left = _objects(client)
        return {"flows": len(_live(left["flows"])), "pods": len(_live(left["pods"])),
                "workspaces_removed": len(objs["workspaces"])}

    result = fan_out(inv, inv.select(limit), clear, timeout=60, max_parallel=forks)
    if as_json:
        print_json(list(result.as_dict().values()))
    else:
        console().print(table("flow down", ("host", "result", "running flows", "running pods", "workspaces removed"),
                              [(h, "ok" if r.ok else r.error, *(r.value or {}).values()) for h, r in result.items()]))
    finish(result, "flow down")


@examples(
    "jinad-fab flow tail -i prod -f                 # follow every Flow and Pod, Ctrl-C stops",
    "jinad-fab flow tail -i prod -l gpu -n 100",
    "jinad-fab flow tail -i prod --json | jq -r 'select(.name==\"encode\") | .msg'",
)
@click.command("tail")
@inventory_option
@limit_option
@click.option("-f", "--follow", is_flag=True, help="keep streaming (Ctrl-C stops)")
@tail_option(default=20, old_lines_flag=True, per=" of each Flow and Pod")
@json_option
def tail(inventory: str, vault_password_file: str | None, limit: str | None, follow: bool, tail: int,
         as_json: bool) -> None:
    """Merge the logs of every running Flow and Pod on the inventory's hosts, each line prefixed
    with host/name (with --json: one object per line, with its host, name and id)."""
    from ....deploy.fleet import client_for

    inv = load_inventory(inventory, vault_password_file)
    hosts = inv.select(limit)
    listed = fan_out(inv, hosts, lambda c: _live(c.flows()) + _live(c.pods()))
    out = console()
    lock = threading.Lock()

    def stream(host_name: str, item: dict[str, Any]) -> None:
        label = f"{host_name}/{_name(item)}"
        try:
            with client_for(inv, inv[host_name], timeout=30) as client:
                for entry in client.logs(item["id"], follow=follow, tail=tail):
                    if as_json:
                        with lock:
                            print_ndjson({**entry, "host": host_name, "name": _name(item), "id": item["id"]})
                        continue
                    text = entry.get("msg") or entry.get("message") or json.dumps(entry)
                    with lock:
                        out.print(f"[cyan]{label}[/cyan] | ", end="")
                        out.print(text, markup=False, highlight=False)
        except Exception as exc:  # one stream ending never stops the others
            with lock:
                err_console().print(f"{label}: log stream ended: {exc}")

    threads = [threading.Thread(target=stream, args=(h, item), daemon=True)
               for h, r in listed.items() if r.ok for item in r.value]
    for t in threads:
        t.start()
    try:
        for t in threads:
            while t.is_alive():
                t.join(0.2)
    except KeyboardInterrupt:
        pass
    finish(listed, "flow tail")


COMMANDS = (up, ps, tail, down)
