"""Fleet Flows that outlive the terminal: `flow up` hands the whole Flow to a daemon and returns.

The controller places the Flow (Pods and Gateway) on the inventory, uploads one workspace to the
Gateway host's daemon holding the Flow's files and the concrete Flow YAML (every placed Pod says
``host: address:port``), and starts it there with ``POST /flows``, the other daemons' tokens in the
request body (never in a file). That daemon's Flow starts the remote Pods on the other daemons
and serves the Gateway; the controller can go away. The daemon also keeps the deployment's
record (``/deployments/{name}``: spec, hash, placement, release, daemons), which any machine with
the inventory finds again by asking every daemon for the name.

Applying the same spec again changes nothing: the hash of the concrete spec and of every file's
content is compared with the record's, and an equal hash with the Flow still running is
``changed=0`` without touching a process. A different hash starts the new release and then stops
the old one (a Gateway on fixed ports: the old one first, as both cannot bind).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import httpx

from ..errors import (
    BadConfig,
    DaemonError,
    DaemonUnreachable,
    DeployError,
    HostsUnreachable,
    NotReady,
    RuntimeFailure,
)
from ..remote import DaemonAddress, FlowHandle, Workspace
from .fleet import client_for, fan_out
from .inventory import Host, Inventory
from .render import RenderedFlow, dump_yaml

DEPLOY_PREFIX = ".deployed-"
"""The concrete Flow YAML's name in the deployment's workspace: ``.deployed-<name>.yml``."""

KEEP_WORKSPACES = 3
"""Releases whose workspace (files + concrete Flow) the keeper keeps for `flow rollback`."""

Say = Callable[[str], None]
OnStep = Callable[[dict[str, Any]], None]


def _quiet(_: str) -> None:
    pass


@dataclasses.dataclass
class Applied:
    """What `flow up` did: ``changed`` is 0 when the running release already had this spec."""

    name: str
    release: int
    changed: int
    action: str  # "unchanged" | "created" | "replaced"
    keeper: str
    gateway: dict[str, Any]
    placement: list[dict[str, Any]]
    flow_id: str | None
    workspace_id: str | None
    seconds: float = 0.0
    steps: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    """Each replica's step of the live changes made (``{"pod", "replica", "step", "at"}``), in order."""

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


LOCK_TTL = 60.0
"""Seconds a controller's lock on a deployment lasts unless renewed (it renews every third of it)."""


class DeploymentLocked(DeployError):
    """Another controller is changing the deployment (exit 2); ``hosts`` maps each daemon that
    refused the lock to who holds it there."""


@contextlib.contextmanager
def locked(inventory: Inventory, name: str, hosts: Sequence[Host], *, command: str, break_lock: bool = False,
           ttl: float = LOCK_TTL) -> Iterator[str]:
    """Hold the lock on changing deployment ``name`` on the daemons of ``hosts`` (its keeper, and
    where it moves) for the ``with`` block, renewed while it runs; yields this run's owner id.

    The lock is a lease the daemon keeps: a controller killed while holding it stops renewing, and
    the next one takes it ``ttl`` seconds later at most. ``break_lock`` removes it first, whoever
    holds it (`--break-lock`). Raises :class:`DeploymentLocked` naming the holder."""
    from .lock import LockHolder

    owner = uuid.uuid4().hex
    me = LockHolder.me(command)
    body = {"owner": owner, "ttl": ttl, "holder": {"user": me.user, "host": me.host, "pid": me.pid,
                                                   "command": me.command}}
    taken: list[Host] = []
    stop = threading.Event()

    def release() -> None:
        stop.set()
        for host in taken:
            with contextlib.suppress(DaemonError), client_for(inventory, host, timeout=10) as client:
                client.unlock_deployment(name, owner)

    try:
        for host in sorted(dict.fromkeys(hosts), key=lambda h: h.name):
            with client_for(inventory, host, timeout=10) as client:
                if break_lock:
                    with contextlib.suppress(DaemonError):  # 404: there was none
                        client.unlock_deployment(name, force=True)
                try:
                    client.lock_deployment(name, body)
                except DaemonError as exc:
                    if exc.status_code in (404, 405):  # a jinad from before deploy locks (mid-upgrade): none there
                        continue
                    if exc.status_code != 409:
                        raise
                    raise DeploymentLocked(f"{exc.message.rstrip('.')} (on {host.name}); wait for it, or pass "
                                           f"--break-lock if that controller died", {host.name: exc.message}) from exc
            taken.append(host)

        def renew() -> None:
            while not stop.wait(ttl / 3):
                for host in taken:
                    with contextlib.suppress(DaemonError), client_for(inventory, host, timeout=10) as client:
                        client.lock_deployment(name, body)

        threading.Thread(target=renew, name=f"lock-{name}", daemon=True).start()
        yield owner
    finally:
        release()


def spec_hash(rendered: RenderedFlow, files: Mapping[str, bytes]) -> str:
    """One hash for what a deployment runs: the concrete Flow (placement included), the Gateway's
    host and every uploaded file's content. Independent of the machine and of the inventory's path."""
    gw = rendered.placement.gateway
    doc = {"flow": dump_yaml(rendered.flow), "gateway": gw.host if gw else None,
           "files": {path: hashlib.sha256(content).hexdigest() for path, content in sorted(files.items())}}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def files_hash(files: Mapping[str, bytes]) -> str:
    return hashlib.sha256(json.dumps({p: hashlib.sha256(c).hexdigest() for p, c in sorted(files.items())},
                                     sort_keys=True).encode()).hexdigest()


_LIVE_KEYS = ("uses", "uses_with", "parallel", "replicas")


def _plain(spec: Any) -> Any:
    from ..safe_yaml import Tagged, loads

    if isinstance(spec, str):
        try:
            spec = loads(spec, mode="keep", name="recorded spec", what="recorded spec")
        except BadConfig:
            return None
    return spec.value if isinstance(spec, Tagged) else spec


def live_changes(old_spec: Any, new_spec: Any) -> list[dict[str, Any]] | None:
    """The live changes (``PUT /flows/{id}`` bodies) that turn the running spec into the new one,
    or None when they cannot: only Pods' ``uses``/``uses_with`` (a rolling update) and
    ``parallel`` (a scale) may differ, with the same Pods, order, placement and Flow options."""
    old, new = _plain(old_spec), _plain(new_spec)
    if not isinstance(old, Mapping) or not isinstance(new, Mapping):
        return None
    if {k: v for k, v in old.items() if k != "pods"} != {k: v for k, v in new.items() if k != "pods"}:
        return None
    old_pods, new_pods = list(old.get("pods") or []), list(new.get("pods") or [])
    if [p.get("name") for p in old_pods] != [p.get("name") for p in new_pods]:
        return None
    changes: list[dict[str, Any]] = []
    replicas = lambda p: int(p.get("parallel") or p.get("replicas") or 1)  # noqa: E731
    for o, n in zip(old_pods, new_pods, strict=True):
        if o == n:
            continue
        if replicas(o) != replicas(n) and isinstance(o.get("spread"), Mapping) and isinstance(n.get("spread"), Mapping):
            # a spread Pod scaled: its parts follow its count; a live scale places the replicas on
            # the same group by the same rule
            o, n = ({**p, "spread": {k: v for k, v in p["spread"].items() if k != "parts"}} for p in (o, n))
        if {k: v for k, v in o.items() if k not in _LIVE_KEYS} != {k: v for k, v in n.items() if k not in _LIVE_KEYS}:
            return None
        if replicas(o) != replicas(n):
            changes.append({"kind": "scale", "pod": n["name"], "replicas": replicas(n)})
        if o.get("uses") != n.get("uses") or o.get("uses_with") != n.get("uses_with"):
            if not isinstance(n.get("uses") or "", str):
                return None
            changes.append({"kind": "rolling_update", "pod": n["name"],
                            "uses": n.get("uses") if o.get("uses") != n.get("uses") else None,
                            "uses_with": dict(n.get("uses_with") or {})})
    return changes


def find(inventory: Inventory, name: str, *, timeout: float = 5.0, unreachable: list[str] | None = None,
         copies: list[tuple[Host, dict[str, Any]]] | None = None) -> tuple[Host, dict[str, Any]] | None:
    """The host whose daemon keeps deployment ``name`` and the record, or None when none does.

    Every daemon is asked at once; unreachable ones are skipped (a lost host cannot keep it) and
    named in ``unreachable`` when a list is given; the copies other daemons keep (see
    :func:`_sync_copies`) go to ``copies`` when a list is given."""

    def ask(client):
        try:
            return client.deployment(name)
        except DaemonError as exc:
            if exc.status_code == 404:
                return None
            raise

    result = fan_out(inventory, list(inventory.hosts.values()), ask, timeout=timeout)
    if unreachable is not None:
        unreachable.extend(h for h, a in result.items() if a.unreachable)
    found = None
    for host, answer in result.items():
        if not (answer.ok and answer.value):
            continue
        if answer.value.get("copy_of"):
            if copies is not None:
                copies.append((inventory[host], answer.value))
        elif found is None:
            found = inventory[host], answer.value
    return found


def keeper_of(inventory: Inventory, name: str) -> tuple[Host, dict[str, Any]]:
    silent: list[str] = []
    copies: list[tuple[Host, dict[str, Any]]] = []
    found = find(inventory, name, unreachable=silent, copies=copies)
    if found is None:
        _not_found(name, silent, copies)
    return found  # type: ignore[return-value]


def locate(inventory: Inventory, name: str) -> tuple[str, dict[str, Any], bool]:
    """(the keeper's host name, the record, whether the keeper's host is lost): the keeper's own
    record, or the latest copy of it when the keeper's daemon does not answer."""
    silent: list[str] = []
    copies: list[tuple[Host, dict[str, Any]]] = []
    found = find(inventory, name, unreachable=silent, copies=copies)
    if found is not None:
        return found[0].name, found[1], False
    if copies and _latest(copies)[1]["copy_of"] in silent:
        record = _latest(copies)[1]
        return record["copy_of"], record, True
    _not_found(name, silent, copies)
    raise AssertionError("unreachable")  # _not_found always raises


def _not_found(name: str, silent: list[str], copies: list[tuple[Host, dict[str, Any]]]) -> None:
    """Raise why no daemon that answers keeps deployment ``name``."""
    if copies:
        kept_by = _latest(copies)[1]["copy_of"]
        raise HostsUnreachable(f"deployment {name!r} is kept by {kept_by}, whose daemon does not answer "
                               f"(copies of its record on {', '.join(sorted(h.name for h, _ in copies))})")
    if silent:  # its keeper may be the host that does not answer
        raise HostsUnreachable(f"no daemon that answers keeps a deployment named {name!r}; "
                               f"unreachable: {', '.join(sorted(silent))}")
    raise BadConfig(f"no daemon of the inventory keeps a deployment named {name!r} "
                    f"(`jinad-fab flow up FLOW -i INV --name {name}` makes one)")


def _latest(copies: list[tuple[Host, dict[str, Any]]]) -> tuple[Host, dict[str, Any]]:
    return max(copies, key=lambda c: (int(c[1].get("release") or 0), c[1].get("updated") or 0))


def _copied_pods(flow: Mapping[str, Any]) -> list[dict[str, Any]]:
    """What a copy of the record keeps of the running Flow's Pods: where each runs, by id (what
    `flow down` stops when the keeper's host is lost)."""
    keys = ("name", "daemon", "id", "workspace_id", "parts")
    return [{k: p.get(k) for k in keys if k in p} for p in flow.get("pods") or []]


def _sync_copies(inventory: Inventory, keeper: Host, record: Mapping[str, Any], *,
                 previous: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Keep a copy of the keeper's ``record`` on every other daemon involved (its Pods' hosts), so
    the deployment is found, with its Gateway LOST, when the keeper's host is lost; remove the
    copies from daemons a ``previous`` record involved and this one does not. Best effort: a host
    that does not answer is named in the result (host -> "kept" or the error), never fatal."""
    flow = record.get("flow") or {}
    copy = {"gateway_host": keeper.name, "release": record.get("release") or 0,
            "spec_hash": record["spec_hash"], "spec": record.get("spec") or "",
            "placement": record.get("placement") or [], "daemons": record.get("daemons") or {},
            "flow_id": record.get("flow_id"), "gateway": _gateway(keeper, flow),
            "pods": _copied_pods(flow),
            "releases": [{k: v for k, v in r.items()} for r in (record.get("releases") or [])[-16:]]}
    may_run = [*(record.get("daemons") or {}), *(h for a in record.get("placement") or [] for h in a.get("fallbacks") or [])]
    involved = sorted({h for h in may_run if h != keeper.name and h in inventory.hosts})
    before = [*((previous or {}).get("daemons") or {}),
              *(h for a in (previous or {}).get("placement") or [] for h in a.get("fallbacks") or [])]
    stale = sorted({h for h in before if h not in involved and h != keeper.name and h in inventory.hosts})
    outcome: dict[str, str] = {}
    name = record["name"]

    def keep(client):
        return client.put_deployment_copy(name, copy)

    def drop(client):
        try:
            body = client.deployment(name)
        except DaemonError as exc:
            if exc.status_code == 404:
                return None
            raise
        if body.get("copy_of"):  # never a record the daemon keeps itself
            client.delete_deployment(name)
        return None

    if involved:
        for host, answer in fan_out(inventory, [inventory[h] for h in involved], keep, timeout=10).items():
            outcome[host] = "kept" if answer.ok else str(answer.error)
    if stale:
        for host, answer in fan_out(inventory, [inventory[h] for h in stale], drop, timeout=10).items():
            outcome[host] = "removed" if answer.ok else str(answer.error)
    return outcome


def _peers(inventory: Inventory, rendered: RenderedFlow) -> dict[str, str]:
    """Each placed Pod's daemon -> its token (what the Gateway host's Flow needs to start them)."""
    out: dict[str, str] = {}
    keeper = rendered.placement.gateway.host if rendered.placement.gateway else None
    for a in rendered.placement:
        if a.spread:  # every part through its daemon (the keeper's too), and its group for a scale
            names: tuple[str, ...] = (*a.hosts, *a.group)
        elif a.host and a.host != keeper:  # the keeper's own Pods run in the Flow's process
            names = (a.host, *a.fallbacks)  # and where it may go when its host is lost
        else:
            continue
        for name in names:
            host = inventory[name]
            token = inventory.token_for(host)
            if token:
                out[host.daemon_address.netloc] = token
    return out


def _fixed_ports(spec_yaml: str) -> tuple[int, ...]:
    from ..safe_yaml import Tagged, loads

    try:
        data = loads(spec_yaml, mode="keep", name="recorded spec", what="recorded spec") or {}
    except BadConfig:  # a record we cannot read: assume no fixed port
        return ()
    data = data.value if isinstance(data, Tagged) else data
    args = (data.get("with") or {}) if isinstance(data, Mapping) else {}
    return tuple(int(args[k]) for k in ("port_http", "port_native", "port_expose") if args.get(k))


def wait_answering(address: str, http_port: int | None, timeout: float = 60.0) -> None:
    """Return once the Gateway answers ``GET /alive`` with all Pods alive."""
    if not http_port:
        return
    url = f"http://{DaemonAddress.parse(address).netloc.rsplit(':', 1)[0]}:{http_port}/alive"
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            r = httpx.get(url, timeout=2)
            if r.status_code == 200 and r.json().get("alive"):
                return
            last = r.text[:200]
        except (httpx.HTTPError, ValueError) as exc:
            last = str(exc)
        time.sleep(0.1)
    raise NotReady(f"the Gateway at {url} did not answer within {timeout:g}s: {last}")


def apply(inventory: Inventory, name: str, rendered: RenderedFlow, files: Mapping[str, bytes], flow_relpath: str,
          *, timeout_ready: float = 600.0, say: Say = _quiet, command: str = "flow up",
          break_lock: bool = False) -> Applied:
    """Make deployment ``name`` run ``rendered`` (see the module docstring), holding its lock on the
    Gateway's host (and on the host keeping it now, when it moves)."""
    gw = rendered.placement.gateway
    hosts = [inventory[gw.host]] if gw is not None and gw.host and gw.host in inventory.hosts else []
    existing = find(inventory, name)
    if existing is not None:
        hosts.append(existing[0])
    with locked(inventory, name, hosts, command=command, break_lock=break_lock):
        return _apply(inventory, name, rendered, files, flow_relpath, timeout_ready=timeout_ready, say=say)


def _apply(inventory: Inventory, name: str, rendered: RenderedFlow, files: Mapping[str, bytes], flow_relpath: str,
           *, timeout_ready: float = 600.0, say: Say = _quiet) -> Applied:
    started = time.monotonic()
    gw = rendered.placement.gateway
    if gw is None or not gw.host:
        raise BadConfig("the Gateway has no host: give `gateway: {hosts: GROUP}` or --gateway-host")
    keeper = inventory[gw.host]
    digest = spec_hash(rendered, files)
    placement = [a.as_dict() for a in rendered.placement]
    existing = find(inventory, name)
    if existing is not None:
        old_host, record = existing
        flow = record.get("flow") or {}
        if record.get("spec_hash") == digest and flow.get("state") == "RUNNING":
            return Applied(name=name, release=record["release"], changed=0, action="unchanged", keeper=old_host.name,
                           gateway=_gateway(old_host, flow), placement=record.get("placement") or placement,
                           flow_id=record.get("flow_id"), workspace_id=record.get("workspace_id"),
                           seconds=time.monotonic() - started)
    spec_text = dump_yaml(rendered.flow)
    # the Flow file itself is in the spec already: a change there alone may be applied live
    fhash = files_hash({k: v for k, v in files.items() if k != flow_relpath})
    if existing is not None and existing[0].name == keeper.name:
        old_host, record = existing
        flow = record.get("flow") or {}
        changes = live_changes(record.get("spec"), rendered.flow) if (
            flow.get("state") == "RUNNING" and record.get("files_hash") == fhash) else None
        if changes:
            return _apply_live(inventory, name, keeper, record, changes, spec_text, digest, placement, fhash,
                               started, say)
        if changes == []:  # the running Flow already is this spec (`flow scale|update` made it): record it
            with client_for(inventory, keeper, timeout=60) as client:
                new = client.put_deployment(name, {
                    "spec": spec_text, "spec_hash": digest, "placement": placement, "gateway_host": keeper.name,
                    "daemons": record.get("daemons") or {}, "flow_id": record["flow_id"],
                    "workspace_id": record.get("workspace_id"), "filename": record.get("filename") or "flow.yml",
                    "files_hash": fhash, "note": "live: the running Flow already had this spec"})
            _sync_copies(inventory, keeper, new)
            return Applied(name=name, release=new["release"], changed=0, action="unchanged (recorded)",
                           keeper=keeper.name, gateway=_gateway(keeper, flow), placement=placement,
                           flow_id=record["flow_id"], workspace_id=record.get("workspace_id"),
                           seconds=time.monotonic() - started)
    folder = flow_relpath.rpartition("/")[0]
    # beside the user's Flow file: the paths it names are relative to its directory
    deploy_file = f"{folder + '/' if folder else ''}{DEPLOY_PREFIX}{name}.yml"
    # the CA bundles the Flow checks its Pods' daemons with (paths relative to the Flow file, too)
    shipped = {f"{folder + '/' if folder else ''}{path}": data for path, data in rendered.files.items()}
    payload = {**files, **shipped, deploy_file: rendered.text.encode()}
    if existing is not None and existing[0].name == keeper.name:
        clash = set(_fixed_ports(existing[1].get("spec") or "")) & set(_fixed_ports(spec_text))
        if clash:  # the new Gateway could not bind while the old one runs
            say(f"stopping release {existing[1]['release']} first: the Gateway's ports {sorted(clash)} are fixed")
            _stop_flow(inventory, existing)
    with client_for(inventory, keeper, timeout=60) as client:
        say(f"uploading {len(payload)} file(s) to {keeper.name} and building the workspace")
        ws = Workspace.create(client, payload)
        try:
            ws.wait_active(timeout_ready, interval=0.2)
            say(f"starting the Flow on {keeper.name}: {len(rendered.placement.assignments)} Pod(s) on "
                f"{len(rendered.placement.hosts)} host(s)")
            handle = ws.start_flow(deploy_file, peers=_peers(inventory, rendered))
        except BaseException:
            try:
                ws.delete()
            except DaemonError:
                pass
            raise
        gateway = _gateway(keeper, handle.body)
        wait_answering(keeper.daemon_address.url, gateway.get("http_port"))
        daemons = {h: inventory[h].daemon_address.label for h in [keeper.name, *rendered.placement.hosts]}
        record = client.put_deployment(name, {
            "spec": spec_text, "spec_hash": digest, "placement": placement, "gateway_host": keeper.name,
            "daemons": daemons, "flow_id": handle.id, "workspace_id": ws.id, "filename": deploy_file,
            "files_hash": fhash,
        })
    if existing is not None:
        old_host, old = existing
        if old.get("flow_id") != handle.id:
            say(f"stopping release {old['release']} on {old_host.name}")
            _retire(inventory, existing, same_keeper=old_host.name == keeper.name)
    _prune(inventory, keeper, record)
    _sync_copies(inventory, keeper, record, previous=existing[1] if existing is not None else None)
    return Applied(name=name, release=record["release"], changed=1,
                   action="replaced" if existing is not None else "created", keeper=keeper.name,
                   gateway=gateway, placement=placement, flow_id=handle.id, workspace_id=ws.id,
                   seconds=time.monotonic() - started)


def _apply_live(inventory: Inventory, name: str, keeper: Host, record: Mapping[str, Any],
                changes: list[dict[str, Any]], spec_text: str, digest: str, placement: list[dict[str, Any]],
                fhash: str | None, started: float, say: Say, note: str = "",
                on_step: OnStep | None = None) -> Applied:
    """Change the running Flow in place, Pod by Pod (rolling updates and scales: requests keep
    being answered), each replica's step passed to ``on_step``, then record the new release with
    the same Flow. A change that fails leaves the record as it was."""
    steps: list[dict[str, Any]] = []

    def step(event: dict[str, Any]) -> None:
        steps.append(event)
        if on_step is not None:
            on_step(event)

    with client_for(inventory, keeper, timeout=60) as client:
        handle = FlowHandle(client, {"id": record["flow_id"]})
        for change in changes:
            what = _describe(change)
            say(f"{what} on {keeper.name}")
            outcome = handle.follow_change(change, on_event=step)
            if outcome.get("state") != "done":
                raise RuntimeFailure(f"deployment {name!r}: the {what} failed: {outcome.get('error')}; "
                                     f"release {record.get('release')} stays recorded")
        new = client.put_deployment(name, {
            "spec": spec_text, "spec_hash": digest, "placement": placement, "gateway_host": keeper.name,
            "daemons": record.get("daemons") or {}, "flow_id": record["flow_id"],
            "workspace_id": record.get("workspace_id"), "filename": record.get("filename") or "flow.yml",
            "files_hash": fhash,
            "note": note or "live: " + ", ".join(f"{c['kind']} {c['pod']}" for c in changes)})
        flow = client.flow(record["flow_id"])
    _sync_copies(inventory, keeper, new)
    pods = sorted({c["pod"] for c in changes})
    action = "rolled " + ", ".join(pods) + (f" ({note.removeprefix('live: ')})" if note else "")
    return Applied(name=name, release=new["release"], changed=len(pods), action=action,
                   keeper=keeper.name, gateway=_gateway(keeper, flow), placement=placement,
                   flow_id=record["flow_id"], workspace_id=record.get("workspace_id"),
                   seconds=time.monotonic() - started, steps=steps)


def _describe(change: Mapping[str, Any]) -> str:
    if change["kind"] == "scale":
        return f"scale of Pod {change['pod']} to {change.get('replicas')} replica(s)"
    what = ", ".join(f"{k}={v}" for k, v in (("uses", change.get("uses")),) if v)
    what += (", " if what else "") + ", ".join(f"{k}={v}" for k, v in (change.get("uses_with") or {}).items())
    return f"rolling update of Pod {change['pod']}" + (f" ({what})" if what else "")


def _edit_spec(spec_text: str, change: Mapping[str, Any], name: str) -> str:
    """The recorded concrete spec with one Pod's ``parallel`` (a scale) or ``uses``/``uses_with``
    (a rolling update; ``uses_with`` keys merged into the recorded ones) changed."""
    from ..safe_yaml import Tagged, loads

    data = loads(spec_text, mode="keep", name="recorded spec", what=f"deployment {name!r}'s recorded spec")
    body = data.value if isinstance(data, Tagged) else data
    pods = list((body or {}).get("pods") or []) if isinstance(body, Mapping) else []
    pod = next((p for p in pods if isinstance(p, dict) and p.get("name") == change["pod"]), None)
    if pod is None:
        known = ", ".join(str(p.get("name")) for p in pods if isinstance(p, dict)) or "none"
        raise BadConfig(f"deployment {name!r} has no Pod named {change['pod']!r} (its Pods: {known})")
    if change["kind"] == "scale":
        pod["replicas" if "replicas" in pod and "parallel" not in pod else "parallel"] = int(change["replicas"])
    else:
        if change.get("uses") is not None:
            pod["uses"] = change["uses"]
        if change.get("uses_with"):
            pod["uses_with"] = {**dict(pod.get("uses_with") or {}), **dict(change["uses_with"])}
    return dump_yaml(data)


def _live_hash(spec_text: str, gateway_host: str, fhash: str | None) -> str:
    """The hash of a release made by `flow scale|update NAME`: its spec, Gateway host and files."""
    doc = {"flow": spec_text, "gateway": gateway_host, "files_hash": fhash, "live": True}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def change(inventory: Inventory, name: str, pod: str, *, replicas: int | None = None, uses: str | None = None,
           uses_with: Mapping[str, Any] | None = None, say: Say = _quiet, on_step: OnStep | None = None,
           command: str = "flow scale|update", break_lock: bool = False) -> Applied:
    """:func:`_change` holding the deployment's lock on its keeper."""
    if (replicas is None) == (uses is None and not uses_with):
        raise BadConfig("give either a replica count (scale) or uses/uses_with (rolling update)")
    with locked(inventory, name, [keeper_of(inventory, name)[0]], command=command, break_lock=break_lock):
        return _change(inventory, name, pod, replicas=replicas, uses=uses, uses_with=uses_with, say=say,
                       on_step=on_step)


def _change(inventory: Inventory, name: str, pod: str, *, replicas: int | None = None, uses: str | None = None,
            uses_with: Mapping[str, Any] | None = None, say: Say = _quiet, on_step: OnStep | None = None) -> Applied:
    """Scale Pod ``pod`` of deployment ``name`` to ``replicas`` (per shard), or roll it to a new
    ``uses`` / ``uses_with`` (merged into the recorded one), in the running Flow, while it serves.

    The deployment is found through its record, from any machine with the inventory; each
    replica's step goes to ``on_step``; the changed spec is recorded as a new release, so `flow
    rollback` can return to the one before. A spec that would not change is ``changed=0``."""
    started = time.monotonic()
    if (replicas is None) == (uses is None and not uses_with):
        raise BadConfig("give either a replica count (scale) or uses/uses_with (rolling update)")
    keeper, record = keeper_of(inventory, name)
    flow = record.get("flow") or {}
    if flow.get("state") != "RUNNING" or not record.get("flow_id"):
        raise BadConfig(f"deployment {name!r}'s Flow is {flow.get('state') or 'gone'} on {keeper.name}: "
                        f"`flow up` it again before changing it")
    body: dict[str, Any] = ({"kind": "scale", "pod": pod, "replicas": int(replicas)} if replicas is not None else
                            {"kind": "rolling_update", "pod": pod, "uses": uses, "uses_with": None})
    spec_text = _edit_spec(record.get("spec") or "", body if replicas is not None else
                           {**body, "uses_with": dict(uses_with or {})}, name)
    if body["kind"] == "rolling_update" and uses_with:  # the whole mapping the recorded spec now holds
        new_pod = next(p for p in (_plain(spec_text) or {}).get("pods") or [] if p.get("name") == pod)
        body["uses_with"] = dict(new_pod.get("uses_with") or {})
    placement = [dict(a) for a in record.get("placement") or []]
    if spec_text == record.get("spec"):
        return Applied(name=name, release=record["release"], changed=0, action="unchanged", keeper=keeper.name,
                       gateway=_gateway(keeper, flow), placement=placement, flow_id=record.get("flow_id"),
                       workspace_id=record.get("workspace_id"), seconds=time.monotonic() - started)
    digest = _live_hash(spec_text, keeper.name, record.get("files_hash"))
    applied = _apply_live(inventory, name, keeper, record, [body], spec_text, digest, placement,
                          record.get("files_hash"), started, say, note=f"live: {_describe(body)}", on_step=on_step)
    applied.action = _describe(body)
    return applied


def _gateway(host: Host, flow: Mapping[str, Any]) -> dict[str, Any]:
    """Where clients reach the Gateway: the host's address as the inventory knows it (the daemon
    may report a name only its own network resolves) and the Flow's ports."""
    gw = dict(flow.get("gateway") or {})
    return {"host": host.daemon_address.host, "http_port": gw.get("http_port"), "native_port": gw.get("native_port")}


def _stop_flow(inventory: Inventory, existing: tuple[Host, dict[str, Any]]) -> None:
    host, record = existing
    if not record.get("flow_id"):
        return
    try:
        with client_for(inventory, host, timeout=60) as client:
            client.delete_flow(record["flow_id"])
    except DaemonError as exc:
        if exc.status_code != 404:
            raise


def _retire(inventory: Inventory, existing: tuple[Host, dict[str, Any]], *, same_keeper: bool) -> None:
    """Stop an old release's Flow (which stops its remote Pods). Its workspace stays for a
    rollback while the record lives on the same daemon; a record left behind on another daemon
    (the Gateway moved) goes with its workspaces."""
    host, record = existing
    with client_for(inventory, host, timeout=60) as client:
        if record.get("flow_id"):
            try:
                client.delete_flow(record["flow_id"])
            except DaemonError as exc:
                if exc.status_code != 404:
                    raise
        if not same_keeper:
            client.delete_deployment(record["name"])
    _remove_remote_pods(inventory, record)


def _prune(inventory: Inventory, keeper: Host, record: Mapping[str, Any]) -> None:
    """Keep the workspaces of the last :data:`KEEP_WORKSPACES` releases (what `flow rollback` can
    return to); remove older ones."""
    releases = record.get("releases") or []
    keep = {r.get("workspace_id") for r in releases[-KEEP_WORKSPACES:]} | {record.get("workspace_id")}
    old = {r.get("workspace_id") for r in releases[:-KEEP_WORKSPACES]} - keep
    if not any(old):
        return
    with client_for(inventory, keeper, timeout=60) as client:
        for wid in sorted(w for w in old if w):
            try:
                client.delete_workspace(wid)
            except DaemonError as exc:
                if exc.status_code != 404:
                    raise


def rollback(inventory: Inventory, name: str, to: int | None = None, *, say: Say = _quiet,
             timeout_ready: float = 120.0, command: str = "flow rollback", break_lock: bool = False) -> Applied:
    """Run an earlier release of deployment ``name`` again (its spec, from its kept workspace);
    the daemon records it as a new release. Holds the deployment's lock on its keeper."""
    with locked(inventory, name, [keeper_of(inventory, name)[0]], command=command, break_lock=break_lock):
        return _rollback(inventory, name, to, say=say, timeout_ready=timeout_ready)


def _rollback(inventory: Inventory, name: str, to: int | None = None, *, say: Say = _quiet,
              timeout_ready: float = 120.0) -> Applied:
    started = time.monotonic()
    keeper, record = keeper_of(inventory, name)
    current = int(record.get("release") or 0)
    releases = {int(r["release"]): r for r in record.get("releases") or []}
    if to is None:
        older = [n for n in releases if n < current]
        if not older:
            raise BadConfig(f"deployment {name!r} has no release before {current} to return to")
        to = max(older)
    target = releases.get(to)
    if target is None:
        raise BadConfig(f"deployment {name!r} keeps releases {sorted(releases)}, not {to}")
    if target["spec_hash"] == record.get("spec_hash"):
        raise BadConfig(f"release {to} has the spec that runs now (release {current})")
    flow = record.get("flow") or {}
    if flow.get("state") == "RUNNING" and (target.get("files_hash") or "") == (record.get("files_hash") or "-"):
        changes = live_changes(record.get("spec"), target["spec"])
        if changes:  # the same files and only Pods' live options differ: roll back in place
            return _apply_live(inventory, name, keeper, record, changes, target["spec"], target["spec_hash"],
                               target.get("placement") or [], target.get("files_hash"), started, say,
                               note=f"live: rollback to release {to}")
    if str(target.get("note") or "").startswith("live:"):
        raise BadConfig(f"release {to} was applied to a running Flow in place and cannot be started from its "
                        f"files alone now; apply its Flow file with `flow up`")
    with client_for(inventory, keeper, timeout=60) as client:
        try:
            ws = client.workspace(target.get("workspace_id") or "")
        except DaemonError as exc:
            raise BadConfig(f"the files of release {to} are gone from {keeper.name} (only the last "
                            f"{KEEP_WORKSPACES} releases keep them); apply its Flow with `flow up` instead") from exc
        if ws.get("state") != "ACTIVE":
            raise BadConfig(f"the workspace of release {to} is {ws.get('state')}")
        # every Pod's daemons: a spread Pod's parts (the keeper's too) and the group it may grow on
        hosts = sorted({h for a in target.get("placement") or []
                        for h in [a.get("host"), *(a.get("hosts") or []), *(a.get("group") or [])] if h})
        peers = {inventory[h].daemon_address.netloc: t for h in hosts if h in inventory.hosts
                 for t in [inventory.token_for(inventory[h])] if t}
        clash = set(_fixed_ports(record.get("spec") or "")) & set(_fixed_ports(target["spec"]))
        if clash:
            say(f"stopping release {current} first: the Gateway's ports {sorted(clash)} are fixed")
            _stop_flow(inventory, (keeper, record))
        say(f"starting release {to}'s Flow on {keeper.name}")
        body = client.create_flow(ws["id"], target.get("filename") or "flow.yml", peers=peers)
        gateway = _gateway(keeper, body)
        wait_answering(keeper.daemon_address.url, gateway.get("http_port"), timeout_ready)
        new = client.put_deployment(name, {
            "spec": target["spec"], "spec_hash": target["spec_hash"], "placement": target.get("placement") or [],
            "gateway_host": keeper.name, "daemons": record.get("daemons") or {}, "flow_id": body["id"],
            "workspace_id": ws["id"], "filename": target.get("filename") or "flow.yml",
            "files_hash": target.get("files_hash"), "note": f"rollback to release {to}"})
    say(f"stopping release {current}")
    _retire(inventory, (keeper, record), same_keeper=True)
    _sync_copies(inventory, keeper, new, previous=record)
    return Applied(name=name, release=new["release"], changed=1, action=f"rolled back to release {to}",
                   keeper=keeper.name, gateway=gateway, placement=new.get("placement") or [], flow_id=body["id"],
                   workspace_id=ws["id"], seconds=time.monotonic() - started)


def _remove_remote_pods(inventory: Inventory, record: Mapping[str, Any]) -> tuple[list[str], list[dict[str, str]]]:
    """Delete the deployment's Pods (and their workspaces) left on other daemons, e.g. when the
    Flow process died without its teardown. Only ids the record names are touched.

    Returns what was removed (``host/pod``) and what could not be (``{"host", "pod", "state",
    "why"}``: ``state`` RUNNING when its daemon still runs it, LOST when the daemon does not answer)."""
    by_label = {h.daemon_address.label: h for h in inventory.hosts.values()}
    removed: list[str] = []
    failed: list[dict[str, str]] = []
    pods = []
    for pod in ((record.get("flow") or {}).get("pods") or []):  # a spread Pod's replicas, one by one
        pods.extend({"name": pod["name"], **part} for part in pod.get("parts") or [pod])
    for pod in pods:
        host = by_label.get(pod.get("daemon") or "")
        if host is None or not pod.get("id"):
            continue
        state = "UNKNOWN"
        try:
            with client_for(inventory, host, timeout=30) as client:
                state = str(client.pod(pod["id"]).get("state"))
                if state in ("STARTING", "RUNNING"):
                    client.delete_pod(pod["id"])
                    removed.append(f"{host.name}/{pod['name']}")
                    state = "STOPPED"
                if pod.get("workspace_id"):
                    client.delete_workspace(pod["workspace_id"])
        except DaemonUnreachable as exc:
            failed.append({"host": host.name, "pod": pod["name"], "state": "LOST", "why": str(exc)})
        except DaemonError as exc:
            if exc.status_code != 404 and state in ("STARTING", "RUNNING"):  # 404: gone already
                failed.append({"host": host.name, "pod": pod["name"], "state": "RUNNING", "why": str(exc)})
    return removed, failed


def down(inventory: Inventory, name: str, *, command: str = "flow down", break_lock: bool = False) -> dict[str, Any]:
    """:func:`_down` holding the deployment's lock on its keeper (none when the keeper is lost)."""
    keeper, _, lost = locate(inventory, name)
    with locked(inventory, name, [] if lost else [inventory[keeper]], command=command, break_lock=break_lock):
        return _down(inventory, name)


def _down(inventory: Inventory, name: str) -> dict[str, Any]:
    """Stop deployment ``name``: its Flow, its Pods on other daemons, its workspaces, its record.

    Nothing else on the fleet is touched. When the keeper's host does not answer, the Pods the
    copies of its record name are stopped on the daemons that answer and the copies removed; its
    Flow (the Gateway and the Pods it ran itself) is reported in ``not_stopped``, as is any Pod
    whose daemon does not answer. ``left_running`` names what a daemon still runs after all."""
    silent: list[str] = []
    copies: list[tuple[Host, dict[str, Any]]] = []
    found = find(inventory, name, unreachable=silent, copies=copies)
    if found is None and not (copies and _latest(copies)[1]["copy_of"] in silent):
        _not_found(name, silent, copies)
    not_stopped: list[dict[str, str]] = []
    if found is not None:
        host, record = found
        with client_for(inventory, host, timeout=120) as client:
            client.delete_deployment(name)
        leftovers, failed = _remove_remote_pods(inventory, record)
        _sync_copies(inventory, host, {**record, "daemons": {}, "placement": []}, previous=record)  # the copies go
        keeper, lost = host.name, False
    else:
        record = _latest(copies)[1]
        keeper, lost = record["copy_of"], True
        not_stopped.append({"host": keeper, "pod": "gateway", "state": "LOST",
                            "why": f"{keeper} does not answer: its Flow (the Gateway and the Pods it ran itself) "
                                   f"was not stopped, and its record stays there until `flow down {name}` runs "
                                   f"again with {keeper} back"})
        leftovers, failed = _remove_remote_pods(inventory, {"flow": {"pods": record.get("pods") or []}})

        def drop(client):
            return client.delete_deployment(name)  # a copy: deleting it stops nothing there

        for h, answer in fan_out(inventory, [h for h, _ in copies], drop, timeout=30).items():
            if not answer.ok:
                failed.append({"host": h, "pod": "-", "state": "COPY", "why": f"its copy of the record: {answer.error}"})
    not_stopped.extend(failed)
    return {"name": name, "keeper": keeper, "keeper_lost": lost, "release": record.get("release"),
            "flow_id": record.get("flow_id"), "removed_leftover_pods": leftovers, "not_stopped": not_stopped,
            "left_running": [f"{f['host']}/{f['pod']}" for f in not_stopped if f["state"] == "RUNNING"]}


def _pod_state(inventory: Inventory, target: Host | None, label: str, pod_id: str, timeout: float) -> dict[str, Any]:
    """One remote Pod's state as its daemon reports it (``LOST`` when the daemon does not answer)."""
    if target is None:
        return {"state": "UNKNOWN", "error": f"{label} is not in the inventory"}
    try:
        with client_for(inventory, target, timeout=timeout) as client:
            body = client.pod(pod_id)
        return {"state": body.get("state"), "error": body.get("error")}
    except DaemonUnreachable as exc:
        return {"state": "LOST", "error": str(exc)}
    except DaemonError as exc:
        return {"state": "GONE" if exc.status_code == 404 else "UNKNOWN", "error": str(exc)}


_WORST = ("LOST", "UNKNOWN", "GONE", "FAILED", "STOPPED", "STARTING")


def _spread_row(inventory: Inventory, keeper: Host, by_label: Mapping[str, Host], pod: Mapping[str, Any],
                flow: Mapping[str, Any], live: Mapping[str, Any], timeout: float) -> dict[str, Any]:
    """A spread Pod's row: RUNNING when every replica's daemon says so, else the worst state seen
    (its replicas' own states in ``parts``); ``hosts`` lists the hosts its replicas run on."""
    parts = []
    for part in pod["parts"]:
        target = by_label.get(part.get("daemon") or "")
        state = _pod_state(inventory, target, part.get("daemon") or "?", part["id"], timeout) if part.get("id") \
            else {"state": "UNKNOWN", "error": "no Pod id"}
        parts.append({**part, "host": target.name if target else part.get("daemon"), **state})
    states = {p["state"] for p in parts}
    state = next((s for s in _WORST if s in states), "RUNNING") if parts else (flow.get("state") or "GONE")
    hosts = list(dict.fromkeys(p["host"] for p in parts))
    counted = live.get(pod["name"]) or {}
    row = {"pod": pod["name"], "host": hosts[0] if hosts else keeper.name, "hosts": hosts,
           "daemon": pod.get("daemon") or keeper.daemon_address.label, "id": pod.get("id"), "state": state,
           "error": next((p["error"] for p in parts if p.get("error")), None), "parts": parts,
           "replicas": counted.get("replicas"), "restarts": counted.get("restarts")}
    if pod.get("lost"):
        row["lost"] = pod["lost"]
    if pod.get("missing_shards"):  # shards the Flow answers without
        row["missing_shards"] = pod["missing_shards"]
    return row


def status(inventory: Inventory, name: str, *, timeout: float = 5.0) -> dict[str, Any]:
    """The deployment as every daemon involved sees it now: one row per Pod with its state, or
    ``LOST`` when its host does not answer."""
    silent: list[str] = []
    copies: list[tuple[Host, dict[str, Any]]] = []
    found = find(inventory, name, timeout=timeout, unreachable=silent, copies=copies)
    if found is None and copies:  # the keeper's host is lost: what its copies say, its Gateway LOST
        record = _latest(copies)[1]
        kept_by = record["copy_of"]
        if kept_by not in inventory.hosts:
            raise BadConfig(f"deployment {name!r} is kept by {kept_by}, which the inventory does not name")
        host = inventory[kept_by]
        why = f"{kept_by} does not answer" if kept_by in silent else f"{kept_by} no longer keeps it"
        record = {**record, "flow": {"state": "LOST", "error": why, "gateway": record.get("gateway") or {},
                                     "pods": record.get("pods") or []}}
    else:
        host, record = found if found is not None else keeper_of(inventory, name)
        flow = record.get("flow") or {}
        if copies and flow.get("state") == "RUNNING" and any(c.get("pods") != _copied_pods(flow) for _, c in copies):
            # the Flow re-placed a Pod since the copies were made: what `flow down` stops without the keeper
            _sync_copies(inventory, host, record)
    flow = record.get("flow") or {}
    live: dict[str, Any] = {}  # replicas and restarts per Pod, as the running Flow counts them
    if record.get("flow_id") and flow.get("state") == "RUNNING":
        try:
            with client_for(inventory, host, timeout=timeout) as client:
                live = (client.flow(record["flow_id"]).get("live") or {}).get("pods") or {}
        except DaemonError:
            live = {}
    by_label = {h.daemon_address.label: h for h in inventory.hosts.values()}
    placed = {a["pod"]: a for a in record.get("placement") or []}
    rows = [{"pod": "gateway", "host": host.name, "hosts": [host.name], "daemon": host.daemon_address.label,
             "id": record.get("flow_id"), "state": flow.get("state") or "GONE", "error": flow.get("error")}]
    for pod in flow.get("pods") or [{"name": n, "daemon": None, "id": None} for n in placed]:
        if pod.get("parts"):  # a spread Pod: one row, its state from every replica's daemon
            rows.append(_spread_row(inventory, host, by_label, pod, flow, live, timeout))
            continue
        label = pod.get("daemon")
        target = by_label.get(label) if label else host
        row = {"pod": pod["name"], "host": target.name if target else label, "daemon": label or
               host.daemon_address.label, "id": pod.get("id"), "state": flow.get("state") or "GONE", "error": None}
        if label and pod.get("id"):
            row.update(_pod_state(inventory, target, label, pod["id"], timeout))
        row["hosts"] = [row["host"]]
        if pod.get("lost"):  # what the Flow saw: LOST since when, re-placed where
            row["lost"] = pod["lost"]
        if pod.get("missing_shards"):  # shards the Flow answers without (LOST with their host, or dead)
            row["missing_shards"] = pod["missing_shards"]
        counted = live.get(pod["name"]) or {}
        row.update(replicas=counted.get("replicas"), restarts=counted.get("restarts"))
        rows.append(row)
    return {"name": name, "release": record.get("release"), "keeper": host.name, "spec_hash": record.get("spec_hash"),
            "gateway": _gateway(host, flow), "flow_id": record.get("flow_id"), "pods": rows,
            "releases": [{k: r.get(k) for k in ("release", "spec_hash", "created")} for r in record.get("releases") or []]}

