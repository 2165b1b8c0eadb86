"""Deployments: the record of a fleet Flow, kept by the daemon that runs its Gateway.

A controller (`jinad-fab flow up`) writes it after starting the Flow here: the Flow's name, the
concrete spec it applied (Flow YAML with every Pod's host filled in; never a token), its hash,
the placement, the daemons involved, and the Flow and workspace ids. Writing a spec whose hash
differs from the current one makes a new release (1, 2, ...); the same hash keeps the release.
The last :data:`KEPT_RELEASES` releases are kept so `flow rollback` can return to one. Any
machine with the inventory finds the record again by asking the daemons for the name.

One row per deployment in the store (kind ``deployment``, id ``deployment:<name>``, durable like
a workspace's). Deleting a deployment stops the Flow and removes the workspace it recorded.

The other daemons involved keep a *copy* (``copy_of``: the keeper's host), written by the
controller, so `flow ps NAME` still finds the deployment when the keeper's host is lost and
reports its Gateway LOST. A copy owns nothing here: deleting it stops nothing; a keeper's own
record written over a copy replaces it.
"""

from __future__ import annotations

import time
from typing import Any

from ..errors import Conflict, NotFound
from ..schemas import DeploymentCopy, DeploymentLockTake, DeploymentWrite
from .manager import Manager
from .store import Record

KIND = "deployment"
KEPT_RELEASES = 10


def _id(name: str) -> str:
    return f"{KIND}:{name}"


def get(manager: Manager, name: str) -> Record:
    rec = manager.store.get(_id(name))
    if rec is None or rec.kind != KIND:
        raise NotFound(f"no deployment named {name!r} on this daemon")
    return rec


def listing(manager: Manager) -> list[Record]:
    return manager.store.list(kind=KIND)


def write(manager: Manager, name: str, body: DeploymentWrite) -> Record:
    """Record ``body`` as the deployment's current state; a new spec hash is a new release."""
    now = time.time()
    current = body.model_dump()
    rec = manager.store.get(_id(name))
    if rec is not None and rec.data.get("copy_of"):  # the Gateway moved here: this daemon keeps it now
        manager.store.delete(rec.id)
        rec = None
    if rec is None:
        release = {"release": 1, "spec_hash": body.spec_hash, "spec": body.spec, "placement": body.placement,
                   "workspace_id": body.workspace_id, "filename": body.filename, "files_hash": body.files_hash,
                   "created": now, "note": body.note}
        return manager.store.insert(Record(id=_id(name), kind=KIND, state="RECORDED", runtime="-",
                                           data={"name": name, **current, "release": 1, "releases": [release]}))
    releases: list[dict[str, Any]] = list(rec.data.get("releases") or [])
    number = int(rec.data.get("release") or 0)
    if body.spec_hash != rec.data.get("spec_hash"):
        number = max([r["release"] for r in releases] + [number]) + 1
        releases.append({"release": number, "spec_hash": body.spec_hash, "spec": body.spec,
                         "placement": body.placement, "workspace_id": body.workspace_id,
                         "filename": body.filename, "files_hash": body.files_hash, "created": now,
                         "note": body.note})
        releases = releases[-KEPT_RELEASES:]
    else:  # the same spec: the same release, with where it runs now
        for r in releases:
            if r["release"] == number:
                r.update(placement=body.placement, workspace_id=body.workspace_id, filename=body.filename)
    return manager.store.update(_id(name), data={**current, "release": number, "releases": releases}) or get(
        manager, name)


def write_copy(manager: Manager, name: str, body: DeploymentCopy) -> Record:
    """Keep a copy of the record of deployment ``name``, whose Gateway runs on another daemon."""
    rec = manager.store.get(_id(name))
    data = {"name": name, **body.model_dump(), "copy_of": body.gateway_host}
    if rec is None:
        return manager.store.insert(Record(id=_id(name), kind=KIND, state="COPY", runtime="-", data=data))
    if not rec.data.get("copy_of"):
        raise Conflict(f"this daemon keeps deployment {name!r} itself (its Gateway runs here); not overwritten "
                       f"by a copy")
    return manager.store.update(rec.id, data=data) or get(manager, name)


def view(manager: Manager, rec: Record) -> dict[str, Any]:
    from .api.routes.flows import flow_view

    d = rec.data
    flow = None
    if d.get("flow_id") and not d.get("copy_of"):
        frec = manager.store.get(d["flow_id"])
        if frec is not None and frec.kind == "flow":
            flow = flow_view(manager.refresh(frec))
    return {"name": d["name"], "release": d.get("release", 0), "spec_hash": d.get("spec_hash", ""),
            "spec": d.get("spec", ""), "placement": d.get("placement") or [], "gateway_host": d.get("gateway_host"),
            "daemons": d.get("daemons") or {}, "flow_id": d.get("flow_id"), "workspace_id": d.get("workspace_id"),
            "filename": d.get("filename", "flow.yml"), "files_hash": d.get("files_hash"),
            "created": rec.created, "updated": rec.updated,
            "flow": flow, "releases": d.get("releases") or [], "copy_of": d.get("copy_of"),
            "gateway": d.get("gateway") or {}, "pods": d.get("pods") or []}


async def delete(manager: Manager, name: str, *, keep_workspaces: bool = False) -> Record:
    """Stop what the deployment started here (its Flow) and remove its workspaces, then the record."""
    rec = get(manager, name)
    d = rec.data
    if d.get("copy_of"):  # a copy owns nothing here
        manager.store.delete(rec.id)
        return rec
    if d.get("flow_id") and manager.store.get(d["flow_id"]) is not None:
        await manager.stop(d["flow_id"])
    if not keep_workspaces:
        wids = {d.get("workspace_id")} | {r.get("workspace_id") for r in d.get("releases") or []}
        for wid in sorted(w for w in wids if w):
            ws = manager.store.get(wid)
            if ws is not None and ws.kind == "workspace":
                await manager.delete_workspace(wid)
    manager.store.delete(rec.id)
    return rec


# ---- the deploy lock: one controller changes a deployment at a time ----------------------------

LOCK_KIND = "deployment-lock"


def _lock_id(name: str) -> str:
    return f"{LOCK_KIND}:{name}"


def lock_view(rec: Record) -> dict[str, Any]:
    d = rec.data
    return {"name": d["name"], "owner": d["owner"], "holder": d.get("holder") or {}, "since": d["since"],
            "expires": d["expires"], "expires_in": round(max(0.0, d["expires"] - time.time()), 1)}


def held_by(rec: Record) -> str:
    h = rec.data.get("holder") or {}
    who = f"{h.get('user', '?')}@{h.get('host', '?')} (pid {h.get('pid', '?')}, `{h.get('command', '?')}`)"
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(rec.data["since"]))
    left = max(0.0, rec.data["expires"] - time.time())
    return f"{who}, since {since}; its lease ends in {left:.0f}s unless renewed"


def take_lock(manager: Manager, name: str, body: DeploymentLockTake) -> Record:
    """Take or renew the lock on changing deployment ``name``: free, expired (its controller died
    or stopped renewing) or already ``body.owner``'s; else Conflict naming who holds it."""
    now = time.time()
    rec = manager.store.get(_lock_id(name))
    if rec is not None and rec.data.get("owner") != body.owner and rec.data.get("expires", 0) > now:
        raise Conflict(f"deployment {name!r} is being changed by {held_by(rec)}")
    data = {"name": name, "owner": body.owner, "holder": dict(body.holder), "expires": now + body.ttl,
            "since": rec.data["since"] if rec is not None and rec.data.get("owner") == body.owner else now}
    if rec is None:
        return manager.store.insert(Record(id=_lock_id(name), kind=LOCK_KIND, state="HELD", runtime="-", data=data))
    return manager.store.update(rec.id, data=data) or rec


def release_lock(manager: Manager, name: str, owner: str | None, *, force: bool = False) -> Record:
    """Release the lock (its owner), or break it whoever holds it (``force``)."""
    rec = manager.store.get(_lock_id(name))
    if rec is None:
        raise NotFound(f"deployment {name!r} is not locked on this daemon")
    if not force and rec.data.get("owner") != owner:
        raise Conflict(f"the lock on deployment {name!r} is held by {held_by(rec)}, not by this run")
    manager.store.delete(rec.id)
    return rec
