"""`jinad-fab flow up|ps|tail|down|rollback -i INV [NAME]`: Flows deployed over an inventory.

`flow up` places the Flow's Pods and its Gateway on the inventory's hosts (``hosts: GROUP`` /
``host: NAME`` / ``gateway: {hosts: ...}``, the placement `render flow` prints), hands the Flow
to the Gateway host's jinad (which starts the Pods on the other daemons and keeps the
deployment's record) and returns once it answers (:mod:`jinad_fab.deploy.deployment`).
With a deployment NAME, `flow ps` shows its Pods' states (``LOST`` for a host that does not
answer), `flow tail` merges their logs, `flow down` stops only what it started, and `flow
rollback` returns to an earlier release; any machine with the inventory can do so. Without a
NAME, `ps`, `tail` and `down` act on every object of the hosts (``-l`` limits them).

These subcommands join the `flow` group beside ``host.py``'s single-host create/ls/logs/delete.
"""

from __future__ import annotations

import copy
import json
import os
import re
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

__all__ = ["COMMANDS"]


def _break_lock_option(fn):
    return click.option("--break-lock", is_flag=True,
                    help="remove the deployment's lock first, whoever holds it (when its controller died: a "
                         "refusal names who holds it and when its lease ends)")(fn)


def _default_name(flow_file: str) -> str:
    stem = os.path.splitext(os.path.basename(flow_file))[0]
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-.") or "flow"
    return name[:64]


def _print_placement(out, placement: list[dict[str, Any]], keeper: str) -> None:
    rows: list[tuple] = [("gateway", keeper, "", 1, "")]
    for a in placement:
        if a.get("parts"):  # a spread Pod: a row per host and shard
            rows += [(a["pod"] + (f" shard {p['shard']}" if p.get("shard") is not None else ""), p["host"],
                      p["target"], p["replicas"], ",".join(map(str, p.get("gpu_ids") or ()))) for p in a["parts"]]
        else:
            rows.append((a["pod"], a["host"] or f"(with the Gateway on {keeper})", a["target"] or "", a["peas"],
                         ",".join(map(str, a["gpu_ids"]))))
    out.print(table("placement", ("pod", "host", "daemon", "peas", "gpus"), rows))


@examples(
    "jinad-fab flow up flow.yml -i prod                  # deploy, wait until it answers, return",
    "jinad-fab flow up flow.yml -i prod --name search --gateway-host cpu   # the Gateway on a cpu host",
    "jinad-fab flow up flow.yml -i prod --attach         # then follow the merged logs (Ctrl-C detaches)",
    "jinad-fab flow up flow.yml -i prod --json | jq .changed",
)
@click.command("up")
@click.argument("flow_file", type=click.Path(exists=True, dir_okay=False))
@inventory_option
@click.option("--name", default=None, help="the deployment's name [the Flow file's name]")
@click.option("--gateway-host", default=None, metavar="HOST|PATTERN",
              help="where the Gateway runs: an inventory host or pattern [`gateway:` in the Flow, else any host]")
@click.option("--attach", is_flag=True, help="follow the merged logs afterwards (Ctrl-C detaches; the Flow keeps running)")
@click.option("--timeout", "timeout_ready", type=float, default=600.0, show_default=True,
              help="seconds for workspaces to build and the Flow to answer")
@_break_lock_option
@json_option
def up(flow_file: str, inventory: str, vault_password_file: str | None, name: str | None, gateway_host: str | None,
       attach: bool, timeout_ready: float, break_lock: bool, as_json: bool) -> None:
    """Deploy FLOW_FILE on the inventory and return once it answers.

    Pods go where they ask (`hosts: GROUP` or an Ansible pattern, `host: NAME`), the Gateway where
    `gateway: {hosts: ...}` or --gateway-host says; the Gateway host's jinad runs the Flow, starts
    the Pods on the other daemons and keeps the deployment's record, so `flow ps|tail|down NAME`
    work from any machine with the inventory. Running it again with the same spec changes
    nothing (`changed=0`); a changed spec becomes a new release.
    """
    from ....deploy import deployment
    from ....flow.remote_pods import flow_upload
    from ....flow.yaml import flow_from_dict

    inv = load_inventory(inventory, vault_password_file)
    name = name or _default_name(flow_file)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", name):
        raise click.BadParameter("letters, digits, '_', '.', '-' (at most 64)", param_hint="--name")
    with open(flow_file, encoding="utf-8") as fh:
        rendered = render_flow(fh.read(), inv, what=flow_file, inventory_name=inventory, gateway=gateway_host,
                               place_gateway=True)
    body = copy.deepcopy(rendered.flow.value if isinstance(rendered.flow, Tagged) else rendered.flow)
    base_dir = os.path.dirname(os.path.abspath(flow_file))
    flow = flow_from_dict(body, base_dir=base_dir, what=flow_file)  # checks every Pod's options here
    files = flow_upload(flow, os.path.abspath(flow_file))
    relpath = os.path.relpath(os.path.abspath(flow_file), base_dir).replace(os.sep, "/")
    err = err_console()
    applied = deployment.apply(inv, name, rendered, files, relpath, timeout_ready=timeout_ready,
                               say=lambda msg: err.print(msg, markup=False), break_lock=break_lock,
                               command=f"jinad-fab flow up {flow_file} -i {inventory} --name {name}")
    if as_json:
        click.echo(json.dumps(applied.as_dict()))
    else:
        out = console()
        _print_placement(out, applied.placement, applied.keeper)
        gw = applied.gateway
        click.echo(f"deployment {applied.name}: release {applied.release} on {applied.keeper}, "
                   f"changed={applied.changed} ({applied.action}, {applied.seconds:.1f}s)")
        click.echo(f"gateway: {gw['host']} http port {gw['http_port']}, native port {gw['native_port']}")
    if attach:
        _follow(inv, name, tail=20, follow=True, as_json=as_json)


def _objects(client) -> dict[str, list[dict[str, Any]]]:
    return {"flows": client.flows(), "pods": client.pods(),
            "workspaces": client.workspaces()}


def _name(item: dict[str, Any]) -> str:
    """A Pod's name from its args, a Flow's file name, else the id."""
    return str((item.get("args") or {}).get("name") or item.get("filename") or item["id"])


def _live(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [i for i in items if i.get("state") not in ("STOPPED", "FAILED", "DELETING")]


def _count(n: int | None) -> str:
    return "-" if n is None else str(n)


def _missing(row: dict[str, Any]) -> str:
    """The shards a Pod's row answers without, by name: ``; shard index/shard-1 LOST``."""
    shards = row.get("missing_shards") or {}
    return "".join(f"; shard {name} [red]{info.get('state', 'LOST')}[/]" for name, info in sorted(shards.items()))


_STATE_STYLE = {"RUNNING": "green", "LOST": "red", "FAILED": "red", "GONE": "yellow", "UNKNOWN": "yellow"}


@examples(
    "jinad-fab flow ps -i prod search          # the deployment's Pods, where they run, their state",
    "jinad-fab flow ps -i prod",
    "jinad-fab flow ps -i prod -l 'gpu[0]' --json | jq '.[].value.pods[].id'",
)
@click.command("ps")
@click.argument("name", required=False)
@inventory_option
@limit_option
@forks_option(default=16)
@json_option
def ps(name: str | None, inventory: str, vault_password_file: str | None, limit: str | None, forks: int,
       as_json: bool) -> None:
    """Show deployment NAME's Pods and their states (LOST: the host does not answer); without NAME,
    list the Flows, Pods and workspaces on every host of the inventory."""
    inv = load_inventory(inventory, vault_password_file)
    if name:
        from ....deploy import deployment

        st = deployment.status(inv, name)
        if as_json:
            print_json(st)
        else:
            gw = st["gateway"]
            click.echo(f"deployment {st['name']}: release {st['release']} kept by {st['keeper']}; "
                       f"gateway {gw['host']} http {gw['http_port']} native {gw['native_port']}")
            rows = [(r["pod"], ",".join(r.get("hosts") or [r["host"]]), r["daemon"],
                     f"[{_STATE_STYLE.get(r['state'], 'white')}]{r['state']}[/]"
                     + (f" (re-placed from {r['lost']['daemon']})" if (r.get("lost") or {}).get("state") == "REPLACED"
                        else "") + _missing(r), _count(r.get("replicas")), _count(r.get("restarts")), r["id"] or "")
                    for r in st["pods"]]
            print_table(table(None, ("pod", "host", "daemon", "state", "replicas", "restarts", "id"), rows,
                              whole=("id",)))
        lost = sorted({p["host"] for r in st["pods"] for p in r.get("parts") or [r] if p["state"] == "LOST"})
        shards = sorted(s for r in st["pods"] for s, info in (r.get("missing_shards") or {}).items()
                        if info.get("state") == "LOST")
        if lost or shards:  # exit 4, as for every command that could not reach a host
            from ....errors import HostsUnreachable

            raise HostsUnreachable(f"flow ps {name}: " + "; ".join(
                ([f"Pods LOST on {', '.join(lost)}"] if lost else [])
                + ([f"shards LOST: {', '.join(shards)}"] if shards else [])))
        return
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
    "jinad-fab flow down -i prod search          # only what deployment `search` started (asks first)",
    "jinad-fab flow down -i prod search -y --json",
    "jinad-fab flow down -i prod -l cpu -y       # every Flow, Pod and workspace on the cpu hosts",
)
@click.command("down")
@click.argument("name", required=False)
@inventory_option
@limit_option
@forks_option(default=16)
@click.option("-y", "--yes", is_flag=True, help="do not ask for confirmation")
@_break_lock_option
@json_option
def down(name: str | None, inventory: str, vault_password_file: str | None, limit: str | None, forks: int,
         yes: bool, break_lock: bool, as_json: bool) -> None:
    """Stop deployment NAME (its Flow, its Pods on every daemon, its workspaces and record) and
    nothing else; without NAME, stop every Flow and Pod on the hosts and remove their workspaces."""
    inv = load_inventory(inventory, vault_password_file)
    if name:
        from ....deploy import deployment

        keeper, record, lost = deployment.locate(inv, name)
        if not yes:
            click.confirm(f"stop deployment {name!r} (release {record.get('release')}, kept by {keeper}) "
                          f"and everything it started?" + (f" {keeper} does not answer: what the other daemons "
                                                           f"run for it is stopped, its Gateway cannot be" if lost
                                                           else ""), abort=True, err=True)
        outcome = deployment.down(inv, name, break_lock=break_lock, command=f"jinad-fab flow down {name} -i {inventory}")
        if as_json:
            print_json(outcome)
        else:
            click.echo((f"deployment {name}: {outcome['keeper']} (its keeper) does not answer; stopped what the "
                        f"other daemons ran for it" if outcome["keeper_lost"]
                        else f"deployment {name} stopped on {outcome['keeper']}")
                       + (f"; leftover Pods removed: {', '.join(outcome['removed_leftover_pods'])}"
                          if outcome["removed_leftover_pods"] else ""))
            for miss in outcome["not_stopped"]:
                err_console().print(f"not stopped: {miss['pod']} on {miss['host']} ({miss['state']}): {miss['why']}",
                                    markup=False)
        if outcome["left_running"]:  # exit 2: something still runs; a host that does not answer is not that
            from ....errors import DeployError

            raise DeployError(f"flow down {name}: still running: {', '.join(outcome['left_running'])}",
                              results={f["host"]: f for f in outcome["not_stopped"] if f["state"] == "RUNNING"})
        return
    hosts = inv.select(limit)
    if not yes:
        click.confirm(f"stop every Flow and Pod and remove every workspace on {len(hosts)} host(s)?",
                      abort=True, err=True)

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

    result = fan_out(inv, hosts, clear, timeout=60, max_parallel=forks)
    if as_json:
        print_json(list(result.as_dict().values()))
    else:
        console().print(table("flow down", ("host", "result", "running flows", "running pods", "workspaces removed"),
                              [(h, "ok" if r.ok else r.error, *(r.value or {}).values()) for h, r in result.items()]))
    finish(result, "flow down")


def _stream_all(inv: Inventory, items: list[tuple[str, str, str]], *, follow: bool, tail: int,
                as_json: bool) -> None:
    """Merge the logs of (host, name, object id) items, each line prefixed host/name."""
    from ....deploy.fleet import client_for

    out = console()
    lock = threading.Lock()

    def stream(host_name: str, name: str, object_id: str) -> None:
        label = f"{host_name}/{name}"
        try:
            with client_for(inv, inv[host_name], timeout=30) as client:
                for entry in client.logs(object_id, follow=follow, tail=tail):
                    if as_json:
                        with lock:
                            print_ndjson({**entry, "host": host_name, "name": name, "id": object_id})
                        continue
                    text = entry.get("msg") or entry.get("message") or json.dumps(entry)
                    with lock:
                        out.print(f"[cyan]{label}[/cyan] | ", end="")
                        out.print(text, markup=False, highlight=False)
        except Exception as exc:  # one stream ending never stops the others
            with lock:
                err_console().print(f"{label}: log stream ended: {exc}")

    threads = [threading.Thread(target=stream, args=item, daemon=True) for item in items]
    for t in threads:
        t.start()
    try:
        for t in threads:
            while t.is_alive():
                t.join(0.2)
    except KeyboardInterrupt:  # detaches: the Flow keeps running
        pass


def _follow(inv: Inventory, name: str, *, tail: int, follow: bool, as_json: bool) -> None:
    """The merged logs of deployment ``name``: its Flow on the keeper and each remote Pod on its host."""
    from ....deploy import deployment

    st = deployment.status(inv, name)
    items = [(st["keeper"], "gateway", st["flow_id"])] if st["flow_id"] else []
    for r in st["pods"][1:]:  # a spread Pod's replicas each have their own log, on their own host
        for part in r.get("parts") or [r]:
            if part["id"] and part["host"] in inv.hosts and part["state"] != "LOST":
                items.append((part["host"], r["pod"], part["id"]))
    _stream_all(inv, items, follow=follow, tail=tail, as_json=as_json)


@examples(
    "jinad-fab flow tail -i prod search -f          # deployment `search`: its Flow and every Pod, Ctrl-C stops",
    "jinad-fab flow tail -i prod -f                 # follow every Flow and Pod, Ctrl-C stops",
    "jinad-fab flow tail -i prod -l gpu -n 100",
    "jinad-fab flow tail -i prod --json | jq -r 'select(.name==\"encode\") | .msg'",
)
@click.command("tail")
@click.argument("name", required=False)
@inventory_option
@limit_option
@click.option("-f", "--follow", is_flag=True, help="keep streaming (Ctrl-C stops)")
@tail_option(default=20, old_lines_flag=True, per=" of each Flow and Pod")
@json_option
def tail(name: str | None, inventory: str, vault_password_file: str | None, limit: str | None, follow: bool,
         tail: int, as_json: bool) -> None:
    """Merge the logs of deployment NAME (or, without NAME, of every running Flow and Pod on the
    inventory's hosts), each line prefixed with host/name (with --json: one object per line, with
    its host, name and id)."""
    inv = load_inventory(inventory, vault_password_file)
    if name:
        _follow(inv, name, tail=tail, follow=follow, as_json=as_json)
        return
    listed = fan_out(inv, inv.select(limit), lambda c: _live(c.flows()) + _live(c.pods()))
    _stream_all(inv, [(h, _name(item), item["id"]) for h, r in listed.items() if r.ok for item in r.value],
                follow=follow, tail=tail, as_json=as_json)
    finish(listed, "flow tail")


@examples(
    "jinad-fab flow rollback search -i prod            # the release before the running one",
    "jinad-fab flow rollback search -i prod --to 3",
)
@click.command("rollback")
@click.argument("name")
@inventory_option
@click.option("--to", "to_release", type=int, default=None, help="the release to return to [the previous one]")
@_break_lock_option
@json_option
def rollback(name: str, inventory: str, vault_password_file: str | None, to_release: int | None,
             break_lock: bool, as_json: bool) -> None:
    """Return deployment NAME to an earlier release (its spec and files); recorded as a new release."""
    from ....deploy import deployment

    inv = load_inventory(inventory, vault_password_file)
    err = err_console()
    applied = deployment.rollback(inv, name, to_release, say=lambda msg: err.print(msg, markup=False),
                                  break_lock=break_lock, command=f"jinad-fab flow rollback {name} -i {inventory}")
    if as_json:
        click.echo(json.dumps(applied.as_dict()))
    else:
        click.echo(f"deployment {applied.name}: release {applied.release} on {applied.keeper} "
                   f"({applied.action}, {applied.seconds:.1f}s)")


COMMANDS = (up, ps, tail, down, rollback)
